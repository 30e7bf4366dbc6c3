-- wrk script for the prediction function in local HTTP mode (one customer per request):
--   target/release/predict  (MODEL_URI=out/model BIND=127.0.0.1:8080; REASONS_METHOD=none for the
--   same work as infra/bench/fastapi_baseline.py, which computes no reasons)
--   wrk -t2 -c16 -d20s --latency -s infra/bench/wrk-predict.lua http://127.0.0.1:8080/predict
-- The body is the first customer of the bundled Telco data (events/apigw-http-predict.json).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = "{\"customerid\": \"8879-ZKJOF\", \"gender\": \"Female\", \"seniorcitizen\": 0, \"partner\": \"No\", \"dependents\": \"No\", \"tenure\": 41, \"phoneservice\": \"Yes\", \"multiplelines\": \"No\", \"internetservice\": \"DSL\", \"onlinesecurity\": \"Yes\", \"onlinebackup\": \"No\", \"deviceprotection\": \"Yes\", \"techsupport\": \"Yes\", \"streamingtv\": \"Yes\", \"streamingmovies\": \"Yes\", \"contract\": \"One year\", \"paperlessbilling\": \"Yes\", \"paymentmethod\": \"Bank transfer (automatic)\", \"monthlycharges\": 79.85, \"totalcharges\": 3320.75}"
