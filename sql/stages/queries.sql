-- Stage `queries`: the query log aggregated per normalised query.
-- Engaged items are those with a click or an order, most ordered and clicked first.
WITH log AS (
    SELECT lrem_normalize(query) AS query, item_id, day, impressions, clicks, orders FROM query_log
),
per_item AS (
    SELECT query, item_id,
           sum(impressions) AS impressions, sum(clicks) AS clicks, sum(orders) AS orders
    FROM log
    GROUP BY query, item_id
),
per_query AS (
    SELECT query, count(DISTINCT day) AS days FROM log GROUP BY query
)
SELECT lrem_query_id(p.query)                                  AS query_id,
       p.query                                                 AS query,
       q.days                                                  AS days,
       sum(p.impressions)                                      AS impressions,
       sum(p.clicks)                                           AS clicks,
       sum(p.orders)                                           AS orders,
       CASE WHEN sum(p.impressions) > 0
            THEN CAST(sum(p.clicks) AS DOUBLE) / sum(p.impressions)
            ELSE 0.0 END                                       AS ctr,
       -- array_agg(item_id ORDER BY orders DESC, clicks DESC, item_id), written as a sort of
       -- structs: DataFusion's ordered array_agg is not vectorised (see lrem_list_field).
       coalesce(
           lrem_list_field(array_sort(
               array_agg(named_struct('orders', -p.orders, 'clicks', -p.clicks, 'item_id', p.item_id))
                   FILTER (WHERE p.clicks + p.orders > 0)), 'item_id'),
           make_array())                                       AS engaged_items
FROM per_item p JOIN per_query q ON p.query = q.query
GROUP BY p.query, q.days
