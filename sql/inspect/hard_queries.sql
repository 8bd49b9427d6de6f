-- Top mined hard queries with their stats (empty until a run has mined them).
SELECT query, impressions, clicks, round(ctr, 3) AS ctr, engaged_items,
       cardinality(missed_items) AS missed, round(missed_share, 2) AS missed_share, pattern
FROM hard_queries
ORDER BY impressions DESC
LIMIT 25;
