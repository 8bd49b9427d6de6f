-- Input of stage `keywords`: each reasoning, with its query.
select query_id, query, reasoning
from reasoning
where {{ shard_filter("query_id") }}
order by query_id
