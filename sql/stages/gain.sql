-- Stage `gain`: set ② minus set ①, per query (items the CoT brought in).
SELECT r2.query_id, r2.item_id, r2.rank, r2.score
FROM retrieval_2 r2
WHERE {{ shard_filter }}
  AND NOT EXISTS (
    SELECT 1 FROM retrieval_1 r1 WHERE r1.query_id = r2.query_id AND r1.item_id = r2.item_id
)
