-- Input of stage `item_embeddings`: every title of the catalogue (of this shard's items).
select item_id, title
from items
where {{ signed_shard_filter("item_id") }}
order by item_id
