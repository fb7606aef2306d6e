-- Rotate wrk's requests over the paths listed in a file, one per line:
--
--   wrk -s bench/wrk/rotate.lua -H 'Authorization: Bearer ...' URL -- paths.txt
--
-- Headers given with -H are kept: wrk.format adds wrk.headers. Each wrk thread
-- walks the whole list in order, so every path is requested equally often.

local requests = {}
local next_index = 1

function init(args)
  local file = assert(args[1], "usage: wrk -s rotate.lua URL -- PATHS_FILE")
  -- PERF: format every request once here; request() then only indexes a
  -- table, so wrk (which shares CPU1 with Postgres and memcached) stays light.
  for path in io.lines(file) do
    requests[#requests + 1] = wrk.format(nil, path)
  end
  assert(#requests > 0, "no paths in " .. file)
end

function request()
  local req = requests[next_index]
  next_index = next_index % #requests + 1
  return req
end
