-- What the inputs hold: catalogue size, log size, distinct normalised queries, days covered.
SELECT
    (SELECT count(*) FROM items)                                   AS items,
    (SELECT count(DISTINCT category_path) FROM items)              AS categories,
    (SELECT count(*) FROM query_log)                               AS log_rows,
    (SELECT count(DISTINCT lrem_normalize(query)) FROM query_log)  AS distinct_queries,
    (SELECT count(DISTINCT day) FROM query_log)                    AS days,
    (SELECT sum(clicks) FROM query_log)                            AS clicks,
    (SELECT sum(orders) FROM query_log)                            AS orders;
