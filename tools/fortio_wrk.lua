-- wrk script behind tools/fortio.sh: makes wrk's results look like `fortio load -json`.
--
-- Configuration comes from environment variables set by fortio.sh (wrk hands script
-- arguments only to the worker threads, but done() runs in the main Lua state, which sees
-- the environment too):
--   KMLAB_OUT           file to write the fortio-format JSON to
--   KMLAB_CONNS         connections (fortio -c), reported as NumThreads like fortio does
--   KMLAB_THREADS       wrk threads actually used
--   KMLAB_QPS           requested total QPS, 0 = as fast as possible
--   KMLAB_KEEPALIVE     1 or 0 (0: every request carries "Connection: close")
--   KMLAB_URL, KMLAB_REQ_DURATION, KMLAB_LABELS, KMLAB_START_TIME, KMLAB_PERCENTILES
--   KMLAB_OPENS_BEFORE  TCP ActiveOpens of this network namespace before the run
--
-- Rate limiting (-qps > 0): each wrk thread hands out send slots spaced 1/(qps/threads)
-- apart and delay() waits for the next slot. wrk measures latency from the moment a
-- request is written, so a late server delays the next sends without that wait being
-- counted: this is NOT coordinated-omission-free (wrk2 or fortio are). wrk rounds delays
-- down to whole milliseconds; slots are absolute times, so the average rate still holds.

local ffi_ok, ffi = pcall(require, "ffi")

local function env_number(name, default)
  local v = tonumber(os.getenv(name) or "")
  if v == nil then return default end
  return v
end

local qps = env_number("KMLAB_QPS", 0)
local nthreads = env_number("KMLAB_THREADS", 1)

-- ------------------------------------------------------------------ worker threads
codes = {}
closes = 0 -- responses after which the server closed the connection (wrk reconnects)

function response(status, headers, body)
  codes[status] = (codes[status] or 0) + 1
  local conn = headers["Connection"] or headers["connection"]
  if conn and conn:lower() == "close" then closes = closes + 1 end
end

local now_ms
if ffi_ok then
  ffi.cdef [[
    typedef struct { long tv_sec; long tv_nsec; } kmlab_timespec;
    int clock_gettime(int clk_id, kmlab_timespec *tp);
  ]]
  local ts = ffi.new("kmlab_timespec")
  now_ms = function()
    ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
    return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
  end
end

if qps > 0 then
  local interval = 1000 * nthreads / qps -- ms between sends of one thread
  local next_slot = nil
  if now_ms then
    function delay()
      local now = now_ms()
      if next_slot == nil or next_slot < now - 1000 then
        -- First request, or more than a second behind: restart the schedule instead of
        -- sending a burst to catch up.
        next_slot = now
      end
      local slot = next_slot
      next_slot = next_slot + interval
      local wait = slot - now
      if wait < 0 then return 0 end
      return wait
    end
  else
    -- No LuaJIT FFI clock: fixed per-connection pause (rate below the target when the
    -- server is slow).
    local conns_per_thread = env_number("KMLAB_CONNS", 1) / nthreads
    function delay()
      return interval * conns_per_thread
    end
  end
end

-- ------------------------------------------------------------------ main state
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

local function json_string(s)
  s = tostring(s)
  s = s:gsub("\\", "\\\\"):gsub('"', '\\"'):gsub("\n", "\\n"):gsub("\r", "\\r"):gsub("\t", "\\t")
  return '"' .. s .. '"'
end

local function json_number(n)
  if n ~= n or n == math.huge or n == -math.huge then return "0" end
  if n == math.floor(n) and math.abs(n) < 1e15 then return string.format("%d", n) end
  return string.format("%.9g", n)
end

local function encode(v, indent)
  indent = indent or ""
  local t = type(v)
  if t == "number" then return json_number(v) end
  if t == "string" then return json_string(v) end
  if t == "boolean" then return tostring(v) end
  if t == "table" then
    local inner = indent .. "  "
    if v.__list then
      local parts = {}
      for _, item in ipairs(v) do table.insert(parts, inner .. encode(item, inner)) end
      if #parts == 0 then return "[]" end
      return "[\n" .. table.concat(parts, ",\n") .. "\n" .. indent .. "]"
    end
    local keys = {}
    for k in pairs(v) do if k ~= "__order" then table.insert(keys, k) end end
    if v.__order then keys = v.__order end
    local parts = {}
    for _, k in ipairs(keys) do
      if v[k] ~= nil then
        table.insert(parts, inner .. json_string(k) .. ": " .. encode(v[k], inner))
      end
    end
    if #parts == 0 then return "{}" end
    return "{\n" .. table.concat(parts, ",\n") .. "\n" .. indent .. "}"
  end
  return "null"
end

local function tcp_active_opens()
  local f = io.open("/proc/net/snmp", "r")
  if not f then return nil end
  local header
  for line in f:lines() do
    if line:match("^Tcp: ") then
      if header == nil then
        header = line
      else
        local names, values = {}, {}
        for w in header:gmatch("%S+") do table.insert(names, w) end
        for w in line:gmatch("%S+") do table.insert(values, w) end
        f:close()
        for i, name in ipairs(names) do
          if name == "ActiveOpens" then return tonumber(values[i]) end
        end
        return nil
      end
    end
  end
  f:close()
  return nil
end

function done(summary, latency, requests)
  local ret = {}
  local server_closes = 0
  for _, thread in ipairs(threads) do
    local c = thread:get("codes") or {}
    for status, n in pairs(c) do
      local key = tostring(status)
      ret[key] = (ret[key] or 0) + n
    end
    server_closes = server_closes + (thread:get("closes") or 0)
  end
  local e = summary.errors
  local socket_errors = e.connect + e.read + e.write + e.timeout
  if socket_errors > 0 then ret["-1"] = socket_errors end

  local count = summary.requests
  local duration_s = summary.duration / 1e6
  local keepalive = os.getenv("KMLAB_KEEPALIVE") == "1"
  local conns = env_number("KMLAB_CONNS", 1)

  local hist
  if count > 0 then
    local pcts = { __list = true }
    for p in (os.getenv("KMLAB_PERCENTILES") or "50,75,90,99,99.9"):gmatch("[^,]+") do
      local pv = tonumber(p)
      if pv then
        table.insert(pcts, {
          __order = { "Percentile", "Value" },
          Percentile = pv,
          Value = latency:percentile(pv) / 1e6,
        })
      end
    end
    hist = {
      __order = { "Count", "Min", "Max", "Sum", "Avg", "StdDev", "Percentiles" },
      Count = count,
      Min = latency.min / 1e6,
      Max = latency.max / 1e6,
      Sum = latency.mean * count / 1e6,
      Avg = latency.mean / 1e6,
      StdDev = latency.stdev / 1e6,
      Percentiles = pcts,
    }
  else
    hist = {
      __order = { "Count", "Min", "Max", "Sum", "Avg", "StdDev", "Percentiles" },
      Count = 0, Min = 0, Max = 0, Sum = 0, Avg = 0, StdDev = 0,
      Percentiles = { __list = true },
    }
  end

  local opens_before = tonumber(os.getenv("KMLAB_OPENS_BEFORE") or "")
  local opens_after = tcp_active_opens()
  local opens_delta = nil
  if opens_before and opens_after then opens_delta = opens_after - opens_before end

  local requested_qps = "max"
  if qps > 0 then requested_qps = json_number(qps) end

  local result = {
    __order = {
      "RunType", "Runner", "Labels", "StartTime", "RequestedQPS", "RequestedDuration",
      "ActualQPS", "ActualDuration", "NumThreads", "WrkThreads", "KeepAlive", "URL",
      "DurationHistogram", "RetCodes", "SocketCount", "SocketCountSource", "ServerCloses",
      "TcpActiveOpens", "ErrorsByKind", "BytesReceived",
    },
    RunType = "HTTP",
    Runner = "wrk",
    Labels = os.getenv("KMLAB_LABELS") or "",
    StartTime = os.getenv("KMLAB_START_TIME") or "",
    RequestedQPS = requested_qps,
    RequestedDuration = os.getenv("KMLAB_REQ_DURATION") or "",
    ActualQPS = duration_s > 0 and count / duration_s or 0,
    ActualDuration = summary.duration * 1000,
    NumThreads = conns,
    WrkThreads = nthreads,
    KeepAlive = keepalive,
    URL = os.getenv("KMLAB_URL") or "",
    DurationHistogram = hist,
    RetCodes = ret,
    -- wrk does not count sockets. With "Connection: close" every request opens one;
    -- otherwise the -c connections plus one reconnect per response the server ended with
    -- "Connection: close" (nginx does every keepalive_requests). Reconnects after socket
    -- errors are not counted. TcpActiveOpens is the namespace-wide kernel counter.
    SocketCount = keepalive and (conns + server_closes) or count,
    SocketCountSource = "derived from response headers",
    ServerCloses = server_closes,
    TcpActiveOpens = opens_delta,
    ErrorsByKind = {
      __order = { "connect", "read", "write", "timeout", "status" },
      connect = e.connect, read = e.read, write = e.write, timeout = e.timeout, status = e.status,
    },
    BytesReceived = summary.bytes,
  }

  local out = os.getenv("KMLAB_OUT")
  local f = assert(io.open(out, "w"), "cannot write " .. tostring(out))
  f:write(encode(result), "\n")
  f:close()

  -- One human line on stderr.
  local p50, p90, p99 = 0, 0, 0
  if count > 0 then
    p50, p90, p99 = latency:percentile(50) / 1e3, latency:percentile(90) / 1e3, latency:percentile(99) / 1e3
  end
  local code_parts = {}
  for k, n in pairs(ret) do table.insert(code_parts, k .. ":" .. n) end
  table.sort(code_parts)
  io.stderr:write(string.format(
    "fortio.sh[wrk]: %d requests in %.2fs = %.1f qps, c=%d keepalive=%s, p50 %.3fms p90 %.3fms p99 %.3fms, codes %s\n",
    count, duration_s, result.ActualQPS, conns, tostring(keepalive), p50, p90, p99,
    #code_parts > 0 and table.concat(code_parts, " ") or "none"))
end
