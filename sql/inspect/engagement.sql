-- Is engagement consistent with the ground truth? CTR of shown items by relevance grade,
-- for head and hard queries (grade 0 = not in qrels).
WITH log AS (
    SELECT lrem_query_id(query) AS query_id, item_id, impressions, clicks, orders FROM query_log
)
SELECT coalesce(q.query_kind, k.kind) AS query_kind,
       coalesce(q.grade, 0) AS grade,
       sum(l.impressions) AS impressions,
       round(sum(l.clicks) * 1.0 / sum(l.impressions), 4) AS ctr,
       round(sum(l.orders) * 1.0 / greatest(sum(l.clicks), 1), 4) AS orders_per_click
FROM log l
LEFT JOIN qrels q ON q.query_id = l.query_id AND q.item_id = l.item_id
LEFT JOIN (SELECT DISTINCT query_id, query_kind AS kind FROM qrels) k ON k.query_id = l.query_id
GROUP BY 1, 2
ORDER BY 1, 2;
