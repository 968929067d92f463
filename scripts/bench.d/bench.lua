-- wrk script for scripts/bench. One file for every scenario, chosen by environment variables
-- (each wrk thread runs this file in a Lua state of its own):
--   BENCH_SCENARIO  get | patch | patch_idem | create | list | warmup
--   BENCH_TOKEN     bearer token (org_bench, mode test)
--   BENCH_N         customers 1..N exist (ids computed as in seed.sql)
--   BENCH_DELETED   every n divisible by this is deleted: PATCH skips those (0: none)
--   BENCH_PATH      the request path for `list` (first page or a deep page's cursor URL)
--   BENCH_NONCE     makes Idempotency-Keys and emails unique to this run
--   BENCH_RATE      optional: target requests/s for the whole run (paced fallback, see delay())
--   BENCH_OUT       where done() writes the summary as JSON
-- Errors: wrk counts responses with status > 399 (summary.errors.status) and socket errors
-- (connect, read, write, timeout); done() reports both. None of the routes answers 1xx/3xx.

local scenario = os.getenv("BENCH_SCENARIO") or "get"
local token = os.getenv("BENCH_TOKEN") or ""
local N = tonumber(os.getenv("BENCH_N") or "100000")
local deleted = tonumber(os.getenv("BENCH_DELETED") or "0")
local list_path = os.getenv("BENCH_PATH") or "/v1/customers?limit=50"
local nonce = os.getenv("BENCH_NONCE") or tostring(os.time())
local rate = tonumber(os.getenv("BENCH_RATE") or "0")
local out = os.getenv("BENCH_OUT")

-- Customer n's id, exactly as seed.sql builds it.
local ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
local TWO40 = 1099511627776
local function b32(v, len)
  local t = {}
  for i = len, 1, -1 do
    local d = v % 32
    t[i] = string.sub(ALPHABET, d + 1, d + 1)
    v = (v - d) / 32
  end
  return table.concat(t)
end
local function customer_id(n)
  local ms = 1735689600000 + n * 7919
  return "cus_" .. b32(ms, 10) .. b32((n * 387420489 + 123456789) % TWO40, 8)
      .. b32((n * 244140625 + 987654321) % TWO40, 8)
end

local function random_live_n()
  while true do
    local n = math.random(1, N)
    if deleted == 0 or n % deleted ~= 0 then return n end
  end
end

local threads = {}
local thread_count = 0
function setup(thread)
  thread_count = thread_count + 1
  thread:set("tid", thread_count)
  table.insert(threads, thread)
end

local counter = 0
local auth_headers, patch_headers
local per_conn_delay_ms = 0

function init(args)
  local t = tonumber(tid) or 0
  math.randomseed(os.time() * 1000 + t * 7777 + (tonumber(string.sub(nonce, -6), 16) or 0))
  for _ = 1, 10 do math.random() end
  auth_headers = { ["Authorization"] = "Bearer " .. token }
  patch_headers = {
    ["Authorization"] = "Bearer " .. token,
    ["Content-Type"] = "application/merge-patch+json",
  }
  wrk.headers["Authorization"] = "Bearer " .. token
  if rate > 0 then
    -- Paced fallback (no oha): each connection waits connections/rate between requests. This
    -- is closed-loop pacing (the wait starts after the response), so it does not correct for
    -- coordinated omission the way wrk2/oha --latency-correction do.
    local conns = tonumber(os.getenv("BENCH_CONNECTIONS") or "16")
    per_conn_delay_ms = 1000 * conns / rate
  end
end

if rate > 0 then
  function delay()
    return per_conn_delay_ms
  end
end

local function patch_body()
  -- perAuth <= 50,000 and perMonth >= 200,000 in every seeded policy (seed.sql).
  return string.format('{"policy":{"limits":{"perDay":%d}}}', math.random(50000, 200000))
end

local MCCS = { '["5734","5817"]', '["4816"]', '["5045","7372","4814"]' }
local function create_body()
  counter = counter + 1
  local k = counter
  return string.format(
    '{"email":"new.%s.%d.%d@example.com","phone":"+1415%07d","name":{"first":"Bench","last":"User%d"},'
      .. '"policy":{"requireIntent":true,"limits":{"perAuth":5000,"perDay":%d,"perMonth":500000},'
      .. '"allowedMccs":%s},"metadata":{"externalId":"new_%s_%d_%d","segment":"smb","riskScore":%d}}',
    nonce, tid or 0, k, math.random(0, 9999999), k, math.random(50000, 200000),
    MCCS[1 + k % 3], nonce, tid or 0, k, k % 100)
end

local requests = {}

requests.get = function()
  return wrk.format("GET", "/v1/customers/" .. customer_id(math.random(1, N)), auth_headers)
end

requests.patch = function()
  return wrk.format("PATCH", "/v1/customers/" .. customer_id(random_live_n()), patch_headers,
    patch_body())
end

requests.patch_idem = function()
  counter = counter + 1
  local headers = {
    ["Authorization"] = "Bearer " .. token,
    ["Content-Type"] = "application/merge-patch+json",
    ["Idempotency-Key"] = string.format("bench-%s-%d-%d-%d", nonce, tid or 0, counter,
      math.random(0, 999999999)),
  }
  return wrk.format("PATCH", "/v1/customers/" .. customer_id(random_live_n()), headers,
    patch_body())
end

requests.create = function()
  return wrk.format("POST", "/v1/customers", {
    ["Authorization"] = "Bearer " .. token,
    ["Content-Type"] = "application/json",
  }, create_body())
end

requests.list = function()
  return wrk.format("GET", list_path, auth_headers)
end

local warm = 0
requests.warmup = function()
  warm = warm + 1
  local m = warm % 4
  if m == 0 then return requests.patch() end
  if m == 1 then return requests.list() end
  return requests.get()
end

request = requests[scenario] or error("unknown BENCH_SCENARIO " .. scenario)

function done(summary, latency, requests_)
  local e = summary.errors
  local json = string.format(
    '{"requests":%d,"duration_us":%d,"bytes":%d,'
      .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
      .. '"latency_us":{"min":%d,"mean":%.1f,"stdev":%.1f,"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d}}',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency.stdev, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), latency.max)
  if out then
    local f = assert(io.open(out, "w"))
    f:write(json, "\n")
    f:close()
  else
    io.write(json, "\n")
  end
end
