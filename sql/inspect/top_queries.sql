-- The most searched queries of the log, normalised as the `queries` stage does, with engagement.
SELECT lrem_normalize(query)                         AS query,
       count(DISTINCT day)                           AS days,
       sum(impressions)                              AS impressions,
       sum(clicks)                                   AS clicks,
       sum(orders)                                   AS orders,
       round(sum(clicks) * 1.0 / sum(impressions), 3) AS ctr
FROM query_log
GROUP BY lrem_normalize(query)
ORDER BY impressions DESC
LIMIT 20;
