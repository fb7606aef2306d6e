-- Catalog reads that always miss both caches: list pages whose max_price is
-- new on every request, so the read goes to memcached (a miss), then to
-- Postgres (a replica when the app has one), then fills the cache:
--
--   wrk -s miss.lua URL -- category_slugs.txt
--
-- The bound lies above every seeded price, so each page is the category's
-- first page; only the cache key differs. Unique across runs against the same
-- cache: the values start from the clock and a random offset.

local slugs = {}
local next_index = 1
local counter = 0
local base

function init(args)
  local file = assert(args[1], "usage: wrk -s miss.lua URL -- CATEGORY_SLUGS_FILE")
  for slug in io.lines(file) do
    slugs[#slugs + 1] = slug
  end
  assert(#slugs > 0, "no category slugs in " .. file)
  math.randomseed(os.time())
  -- Money allows 10 digits: 1e9 plus up to ~8.6e9, a million requests per second of clock.
  base = 1000000000 + (os.time() % 8000) * 1000000 + math.random(0, 999) * 1000
end

function request()
  local slug = slugs[next_index]
  next_index = next_index % #slugs + 1
  counter = counter + 1
  return wrk.format(nil, string.format("/v1/products?category=%s&limit=20&max_price=%d.00",
                                       slug, base + counter))
end
