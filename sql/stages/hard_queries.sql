-- Stage `hard_queries`, first half: every query with a verdict. `hard` ones are written; the
-- others count as filtered under their verdict (the first mining rule they fail).
-- Thresholds come from [stages.mining] of the config; `max_queries` (0 = all) keeps the most
-- searched hard queries and files the rest under `over_max_queries`.
WITH engaged AS (
    SELECT query_id, unnest(engaged_items) AS item_id FROM queries
),
missed AS (
    -- array_sort over array_agg, not array_agg(… ORDER BY …): see queries.sql.
    SELECT e.query_id, array_sort(array_agg(e.item_id)) AS missed_items, count(*) AS missed
    FROM engaged e
    WHERE NOT EXISTS (
        SELECT 1 FROM retrieval_1 r WHERE r.query_id = e.query_id AND r.item_id = e.item_id
    )
    GROUP BY e.query_id
),
judged AS (
SELECT q.query_id, q.query, q.impressions, q.clicks, q.ctr,
       CAST(cardinality(q.engaged_items) AS BIGINT)   AS engaged_items,
       coalesce(m.missed_items, make_array())        AS missed_items,
       CASE WHEN cardinality(q.engaged_items) > 0
            THEN CAST(coalesce(m.missed, 0) AS DOUBLE) / cardinality(q.engaged_items)
            ELSE 0.0 END                             AS missed_share,
       {{ pattern_case }}                            AS pattern,
       CASE
           WHEN q.days < {{ min_days }}                        THEN 'too_few_days'
           WHEN q.impressions < {{ min_impressions }}          THEN 'too_few_impressions'
           WHEN q.ctr > {{ max_ctr }}                          THEN 'ctr_above_max'
           WHEN coalesce(m.missed, 0) < {{ min_missed_items }} THEN 'too_few_missed_items'
           WHEN cardinality(q.engaged_items) = 0
             OR CAST(coalesce(m.missed, 0) AS DOUBLE) / cardinality(q.engaged_items) < {{ min_missed_share }}
                                                               THEN 'missed_share_below_min'
           ELSE 'hard'
       END                                           AS verdict
FROM queries q LEFT JOIN missed m ON q.query_id = m.query_id
)
SELECT query_id, query, impressions, clicks, ctr, engaged_items, missed_items, missed_share, pattern,
       CASE WHEN verdict = 'hard' AND {{ max_queries }} > 0
                 AND row_number() OVER (PARTITION BY verdict ORDER BY impressions DESC, query_id) > {{ max_queries }}
            THEN 'over_max_queries' ELSE verdict END AS verdict
FROM judged
