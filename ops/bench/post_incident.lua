-- wrk script: POST /incidents with a ~5 KB SDM document and a unique submissionId per request.
-- Environment: API_KEY, API_SECRET, BODY (path of the template), RATE (optional: requests/s in
-- total, spread over all connections, via wrk's delay()), CONNECTIONS (needed with RATE).
local template
local counter = 0
local thread_id = 0
local threads = {}

function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  local f = assert(io.open(os.getenv("BODY"), "r"))
  template = f:read("*a")
  f:close()
  thread_id = id
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/vnd.api+json"
  wrk.headers["x-api-key"] = os.getenv("API_KEY")
  wrk.headers["x-api-secret"] = os.getenv("API_SECRET")
  local rate = tonumber(os.getenv("RATE") or "")
  local conns = tonumber(os.getenv("CONNECTIONS") or "")
  if rate and conns then
    -- each connection waits conns/rate seconds between requests
    per_request_delay_ms = conns / rate * 1000
  end
  math.randomseed(os.time() + thread_id * 7919)
  run_tag = string.format("%08x", math.random(0, 0x7fffffff))
end

function request()
  counter = counter + 1
  -- unique per run, thread and request; shaped like a UUID
  local sid = string.format("%s-%04x-4%03x-8%03x-%012x", run_tag, thread_id, 0, 0, counter)
  local body = template:gsub("__SUBMISSION_ID__", sid, 1)
  return wrk.format(nil, "/incidents", nil, body)
end

if os.getenv("RATE") then
  function delay()
    return per_request_delay_ms
  end
end

local non201 = 0
function response(status, headers, body)
  if status ~= 201 then
    non201 = non201 + 1
    if non201 <= 3 then io.stderr:write("unexpected status " .. status .. ": " .. body .. "\n") end
  end
end

function done(summary, latency, requests)
  local s = summary
  io.write(string.format("RESULT requests=%d duration_s=%.2f rps=%.0f errors_status=%d errors_connect=%d errors_timeout=%d p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f max_ms=%.2f\n",
    s.requests, s.duration / 1e6, s.requests / (s.duration / 1e6), s.errors.status, s.errors.connect, s.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
end
