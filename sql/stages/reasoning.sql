-- Input of stage `reasoning`: the hard queries (of this shard).
select query_id, query
from hard_queries
where {{ shard_filter("query_id") }}
order by query_id
