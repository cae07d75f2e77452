-- wrk script: POST the JSON body in $BENCH_BODY_FILE, check every answer, report as JSON.
--
-- An answer counts as bad unless it is HTTP 200, contains $BENCH_EXPECT and has no "error"
-- member, so a server that answers fast but wrongly cannot win. done() prints one line,
-- "BENCH_JSON {...}", that bench/run.py parses.

local function read_file(path)
  local f = assert(io.open(path, "rb"), "cannot open " .. tostring(path))
  local data = f:read("*a")
  f:close()
  return data
end

wrk.method = "POST"
wrk.body = read_file(os.getenv("BENCH_BODY_FILE"))
wrk.headers["Content-Type"] = "application/json"

local expect = os.getenv("BENCH_EXPECT") or ""
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  bad = 0
  responses = 0
  sample = ""
end

function response(status, headers, body)
  responses = responses + 1
  if status ~= 200 or not string.find(body, expect, 1, true)
      or string.find(body, '"error"', 1, true) then
    bad = bad + 1
    if sample == "" then
      sample = tostring(status) .. " " .. string.sub(body or "", 1, 300)
    end
  end
end

local function json_string(s)
  s = string.gsub(s, '[%c"\\]', function(c)
    return string.format("\\u%04x", string.byte(c))
  end)
  return '"' .. s .. '"'
end

function done(summary, latency, requests)
  local total_bad, total_responses, first_bad = 0, 0, ""
  for _, thread in ipairs(threads) do
    total_bad = total_bad + thread:get("bad")
    total_responses = total_responses + thread:get("responses")
    if first_bad == "" then first_bad = thread:get("sample") end
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"responses_checked":%d,' ..
    '"bad":%d,"bad_sample":%s,"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,' ..
    '"timeout":%d},"latency_us":{"mean":%.1f,"p50":%d,"p90":%d,"p99":%d,"max":%d}}\n',
    summary.requests, summary.duration, summary.bytes, total_responses, total_bad,
    json_string(first_bad), e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max))
end
