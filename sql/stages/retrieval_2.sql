-- Input of stage `retrieval_2` (set ②): each query with its CoT.
select query_id, query, cot
from cot
where {{ shard_filter("query_id") }}
order by query_id
