-- wrk script: POST a ~1 KB Telegram update with a unique update_id per request.
local counter = 0
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
local pad = string.rep("lorem ipsum ", 60)
request = function()
  counter = counter + 1
  local uid = (tid or 0) * 1000000000 + counter  -- every run gets a fresh stream
  local body = '{"update_id":' .. uid .. ',"message":{"message_id":' .. uid ..
    ',"date":1764750000,"chat":{"id":-1001234567890,"type":"supergroup","title":"Bench chat"},' ..
    '"from":{"id":5,"is_bot":false,"first_name":"Ann","username":"ann"},"text":"' .. pad .. '"}}'
  return wrk.format("POST", nil, {["Content-Type"] = "application/json",
    ["X-Telegram-Bot-Api-Secret-Token"] = "bench-secret"}, body)
end
