-- wrk script: POST a ~1 KB Telegram update with a unique update_id per request.
-- `wrk ... -- BASE`: update ids start at BASE * 1e10, so that runs against the same stream or
-- table (bench/harness.py gives every run its own BASE) never repeat one.
local counter = 0
local threads = 0
local base = 0
function init(args)
  base = (tonumber(args[1]) or 0) * 1e10
end
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
local pad = string.rep("lorem ipsum ", 60)
request = function()
  counter = counter + 1
  local uid = string.format("%.0f", base + (tid or 0) * 1000000000 + counter)
  local body = '{"update_id":' .. uid .. ',"message":{"message_id":' .. uid ..
    ',"date":1764750000,"chat":{"id":-1001234567890,"type":"supergroup","title":"Bench chat"},' ..
    '"from":{"id":5,"is_bot":false,"first_name":"Ann","username":"ann"},"text":"' .. pad .. '"}}'
  return wrk.format("POST", nil, {["Content-Type"] = "application/json",
    ["X-Telegram-Bot-Api-Secret-Token"] = "bench-secret"}, body)
end
