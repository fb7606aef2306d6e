-- Many keep-alive clients, each pacing itself, rotating over the paths in a file:
--
--   wrk -t1 -c1000 -d60s -s keepalive.lua https://HOST:PORT/ \
--       -- PATHS_FILE PACE_MS START_EPOCH_MS CONNECTIONS
--
-- Each connection, once open (TCP and TLS), sends its first request at once,
-- as a real client does (nginx closes a connection that sends no request
-- within client_header_timeout of its accept), and every later one after a
-- pause of PACE_MS on average after its previous answer, drawn from
-- 0.5-1.5 x PACE_MS so that the connections of one batch, which open
-- together, drift apart: CONNECTIONS / PACE_MS requests per millisecond in
-- all.
--
-- wrk's delay() does not say which connection asks. Every answer is followed
-- by exactly one delay() call on its connection, and every other call is a
-- connection that has just opened, so the calls are told apart by counting
-- the answers not yet followed by their call. Only when a connection opens in
-- the same event-loop turn as another's answer can the two be swapped: the
-- opening one then waits as a later request would. While this wrk process is
-- still opening connections, that wait is kept short (OPENING_PACE_MS), so
-- even a swapped first request comes within a few seconds of its handshake.
-- Use one wrk thread (-t1), so CONNECTIONS is this thread's own.
--
-- Only requests sent from START_EPOCH_MS on are measured: the opening of every
-- connection (the harness runs several wrk processes, one batch of clients
-- after another) is a warm-up. wrk's own histogram cannot leave it out, so the
-- latency is taken here: each request carries its own X-Request-ID, which the
-- app (or nginx, for its own errors) sends back, and its send time is kept
-- until that answer arrives.
--
-- done() prints two lines the harness reads:
--   keepalive opened=N last_open_ms=EPOCH_MS late=L measured=M measured_errors=E
--   keepalive_latency_us VALUE:COUNT VALUE:COUNT ...
-- (N connections got through TLS, the last at EPOCH_MS; L of them only after
-- the start, so the warm-up was too short; M answers to measured requests, E of
-- them with a status >= 400; then their latency histogram in 100 us buckets,
-- for the harness to merge over the wrk processes.)

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_usec; } keepalive_timeval;
int gettimeofday(keepalive_timeval *tv, void *tz);
]]
local timeval = ffi.new("keepalive_timeval")

local function now_us()
  ffi.C.gettimeofday(timeval, nil)
  return tonumber(timeval.tv_sec) * 1000000 + tonumber(timeval.tv_usec)
end

local BUCKET_US = 100
local OPENING_PACE_MS = 2000

local paths = {}
local next_index = 1
local pace_ms, start_us, connections
local headers = {}
local prefix
local sequence = 0
local sent = {}  -- request id -> send time (us), for measured requests only
local unpaced = 0  -- answers whose connection has not yet asked for its next delay

-- Globals: done() reads them from the thread (thread:get).
opened = 0
last_open_ms = 0
late = 0
measured = 0
measured_errors = 0
histogram = {}  -- latency bucket -> answers

local threads = {}

function setup(thread)
  threads[#threads + 1] = thread
end

function init(args)
  local usage = "usage: wrk -s keepalive.lua URL -- PATHS_FILE PACE_MS START_EPOCH_MS CONNECTIONS"
  local file = assert(args[1], usage)
  pace_ms = assert(tonumber(args[2]), usage)
  start_us = assert(tonumber(args[3]), usage) * 1000
  connections = assert(tonumber(args[4]), usage)
  for path in io.lines(file) do
    paths[#paths + 1] = path
  end
  assert(#paths > 0, "no paths in " .. file)
  for name, value in pairs(wrk.headers) do
    headers[name] = value
  end
  math.randomseed(now_us())
  -- Unique across the wrk processes of one run.
  prefix = string.format("ka-%d-%d-", now_us(), math.random(1, 1000000000))
end

function delay()
  if unpaced > 0 then
    -- A connection that was just answered: its next request.
    unpaced = unpaced - 1
    local pace = pace_ms
    if opened < connections then
      pace = math.min(pace, OPENING_PACE_MS)
    end
    return math.floor(pace * (0.5 + math.random()))
  end
  -- A connection that has just finished its TLS handshake: its first request.
  opened = opened + 1
  local now = now_us()
  last_open_ms = math.floor(now / 1000)
  if now > start_us then
    late = late + 1
  end
  return 0
end

function request()
  local path = paths[next_index]
  next_index = next_index % #paths + 1
  sequence = sequence + 1
  local id = prefix .. sequence
  local now = now_us()
  if now >= start_us then
    sent[id] = now
  end
  headers["X-Request-ID"] = id
  return wrk.format(nil, path, headers)
end

function response(status, response_headers, body)
  unpaced = unpaced + 1
  local id = response_headers["x-request-id"] or response_headers["X-Request-ID"]
  local sent_at = id and sent[id]
  if not sent_at then
    return  -- sent during the warm-up
  end
  sent[id] = nil
  local bucket = math.floor((now_us() - sent_at) / BUCKET_US)
  histogram[bucket] = (histogram[bucket] or 0) + 1
  measured = measured + 1
  if status > 399 then
    measured_errors = measured_errors + 1
  end
end

function done()
  local totals = {opened = 0, late = 0, measured = 0, measured_errors = 0}
  local last, buckets = 0, {}
  for _, thread in ipairs(threads) do
    for name, _ in pairs(totals) do
      totals[name] = totals[name] + thread:get(name)
    end
    last = math.max(last, thread:get("last_open_ms"))
    for bucket, count in pairs(thread:get("histogram")) do
      buckets[#buckets + 1] = string.format("%d:%d", bucket * BUCKET_US, count)
    end
  end
  io.write(string.format("keepalive opened=%d last_open_ms=%d late=%d measured=%d "
    .. "measured_errors=%d\n", totals.opened, last, totals.late, totals.measured,
    totals.measured_errors))
  io.write("keepalive_latency_us " .. table.concat(buckets, " ") .. "\n")
end
