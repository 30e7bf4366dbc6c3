"""Reads template.yaml the way the AWS tools do, for tests/deploy.rs:

  sam_template.py raw TEMPLATE          # the template as JSON (CloudFormation short tags decoded)
  sam_template.py transformed TEMPLATE  # after the SAM transform (AWS::Serverless::* expanded)

The transform is the SAM translator that `sam deploy` and cfn-lint use. Function code and layer
content are not needed for it, so CodeUri and ContentUri are replaced by placeholder S3 addresses.
"""
import json
import os
import sys

from cfnlint.decode import decode


def main():
    cmd, path = sys.argv[1], sys.argv[2]
    tpl, matches = decode(path)
    if matches:
        raise SystemExit(f"cannot read {path}: {matches}")
    if cmd == "raw":
        print(json.dumps(tpl))
        return
    if cmd != "transformed":
        raise SystemExit(f"unknown command {cmd}")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    from samtranslator.translator.transform import transform

    for r in tpl["Resources"].values():
        if r["Type"] == "AWS::Serverless::Function":
            r["Properties"]["CodeUri"] = "s3://placeholder/code.zip"
        if r["Type"] == "AWS::Serverless::LayerVersion":
            r["Properties"]["ContentUri"] = "s3://placeholder/layer.zip"

    class NoManagedPolicies:
        def load(self):
            return {}

    print(json.dumps(transform(tpl, {}, NoManagedPolicies())))


if __name__ == "__main__":
    main()
