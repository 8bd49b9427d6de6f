-- Rows per stage, in DAG order, with the rows that failed for good in each.
-- Works on any directory: a table a run has not produced yet counts 0.
WITH counts AS (
              SELECT  1 AS step, 'query_log'          AS stage, count(*) AS rows FROM query_log
    UNION ALL SELECT  2, 'items',              count(*) FROM items
    UNION ALL SELECT  3, 'queries',            count(*) FROM queries
    UNION ALL SELECT  4, 'item_embeddings',    count(*) FROM item_embeddings
    UNION ALL SELECT  5, 'retrieval_1',        count(*) FROM retrieval_1
    UNION ALL SELECT  6, 'hard_queries',       count(*) FROM hard_queries
    UNION ALL SELECT  7, 'reasoning',          count(*) FROM reasoning
    UNION ALL SELECT  8, 'keywords',           count(*) FROM keywords
    UNION ALL SELECT  9, 'cot',                count(*) FROM cot
    UNION ALL SELECT 10, 'retrieval_2',        count(*) FROM retrieval_2
    UNION ALL SELECT 11, 'gain',               count(*) FROM gain
    UNION ALL SELECT 12, 'relevance',          count(*) FROM relevance
    UNION ALL SELECT 13, 'triples',            count(*) FROM triples
    UNION ALL SELECT 14, 'triples_cold_start', count(*) FROM triples_cold_start
    UNION ALL SELECT 15, 'triples_rl',         count(*) FROM triples_rl
),
failed AS (SELECT stage, count(*) AS failed FROM failures GROUP BY stage)
SELECT c.stage, c.rows, coalesce(f.failed, 0) AS failed
FROM counts c LEFT JOIN failed f ON c.stage = f.stage
ORDER BY c.step;
