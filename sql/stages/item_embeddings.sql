-- Input of stage `item_embeddings`: every title of the catalogue.
select item_id, title
from items
order by item_id
