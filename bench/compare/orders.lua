-- POST /v1/orders, one line, each request with its own Idempotency-Key:
--
--   wrk -s orders.lua -H 'Authorization: Bearer ...' URL -- product_ids.txt
--
-- Orders rotate over the product ids in the file (one per line), so
-- concurrent orders mostly lock different rows, as different shoppers would.

local bodies = {}
local next_index = 1
local counter = 0
local prefix
local headers = {}

function init(args)
  local file = assert(args[1], "usage: wrk -s orders.lua URL -- PRODUCT_IDS_FILE")
  for id in io.lines(file) do
    bodies[#bodies + 1] = '{"items":[{"product_id":"' .. id .. '","quantity":1}],'
      .. '"shipping_address":{"line1":"1 Bench Street","city":"Loadville",'
      .. '"postal_code":"12345","country":"US"}}'
  end
  assert(#bodies > 0, "no product ids in " .. file)
  -- Unique across runs against the same database: keys are stored for a day.
  math.randomseed(os.time())
  prefix = string.format("bench-%d-%d-", os.time(), math.random(1, 1000000000))
  -- A headers table given to wrk.format replaces wrk.headers (the -H options).
  for name, value in pairs(wrk.headers) do
    headers[name] = value
  end
  headers["Content-Type"] = "application/json"
end

function request()
  local body = bodies[next_index]
  next_index = next_index % #bodies + 1
  counter = counter + 1
  headers["Idempotency-Key"] = prefix .. counter
  return wrk.format("POST", "/v1/orders", headers, body)
end
