-- Stage `triples`: relevant gain pairs with their query, CoT and item title, and the split each
-- goes to. The split is by query_id (a seeded hash), never by row, so no query is in both.
-- `shard_filter` keeps one shard's queries (TRUE when the run is not sharded).
SELECT c.query_id, c.query, c.cot, r.item_id, i.title, r.score AS relevance,
       lrem_bucket(c.query_id, CAST({{ seed }} AS BIGINT UNSIGNED)) < {{ rl_fraction }} AS rl
FROM relevance r
JOIN cot c ON c.query_id = r.query_id
JOIN items i ON i.item_id = r.item_id
WHERE r.relevant AND {{ shard_filter("r.query_id") }}
