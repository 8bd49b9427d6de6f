//! Items of the sample world: `{brand} {attributes} {type} {size}` titles over the world's product
//! types. The first items cover every type once, then every (type, attribute) pair once, so even a
//! small catalogue has an item for every need of the world (`sofa bed[no metal bar]` included).

use rand::{Rng, RngCore};

use super::world::TypeRef;

/// First item id; ids are consecutive from here.
pub const FIRST_ITEM_ID: i64 = 100_001;

/// One generated item, with the structure its title was built from (qrels need it).
#[derive(Debug, Clone)]
pub struct Item {
    pub id: i64,
    pub type_index: usize,
    pub brand: u16,
    /// Attribute indices into the product type's list, at most two, ascending.
    pub attributes: Vec<u16>,
    pub size: u16,
    pub price: f64,
}

impl Item {
    pub fn has_attribute(&self, attribute: usize) -> bool {
        self.attributes.iter().any(|&a| a as usize == attribute)
    }

    pub fn title(&self, types: &[TypeRef<'_>]) -> String {
        let p = types[self.type_index].product;
        let mut words = vec![p.brands[self.brand as usize].as_str()];
        words.extend(self.attributes.iter().map(|&a| p.attributes[a as usize].as_str()));
        words.push(&p.name);
        words.push(&p.sizes[self.size as usize]);
        words.join(" ")
    }

    pub fn category_path(&self, types: &[TypeRef<'_>]) -> String {
        types[self.type_index].category.to_string()
    }

    pub fn brand<'w>(&self, types: &[TypeRef<'w>]) -> &'w str {
        &types[self.type_index].product.brands[self.brand as usize]
    }
}

/// Items needed to cover every type and every (type, attribute) pair once.
pub fn minimum_items(types: &[TypeRef<'_>]) -> usize {
    types.len() + types.iter().map(|t| t.product.attributes.len()).sum::<usize>()
}

pub fn generate(types: &[TypeRef<'_>], n: usize, rng: &mut impl RngCore) -> Vec<Item> {
    let pairs: Vec<(usize, u16)> = types
        .iter()
        .enumerate()
        .flat_map(|(t, r)| (0..r.product.attributes.len()).map(move |a| (t, a as u16)))
        .collect();
    (0..n)
        .map(|i| {
            let forced = i.checked_sub(types.len()).and_then(|j| pairs.get(j));
            let type_index = match forced {
                _ if i < types.len() => i,
                Some(&(t, _)) => t,
                None => rng.random_range(0..types.len()),
            };
            let p = types[type_index].product;
            let brand = rng.random_range(0..p.brands.len()) as u16;
            let mut attributes = Vec::new();
            if let Some(&(_, a)) = forced {
                attributes.push(a);
            } else if rng.random_bool(0.85) {
                attributes.push(rng.random_range(0..p.attributes.len()) as u16);
                if rng.random_bool(0.25) {
                    let second = rng.random_range(0..p.attributes.len()) as u16;
                    if second != attributes[0] {
                        attributes.push(second);
                    }
                }
                attributes.sort_unstable();
            }
            let size = rng.random_range(0..p.sizes.len()) as u16;
            // Shop prices end in .49 or .99.
            let raw = rng.random_range(p.price[0]..p.price[1]);
            let price = raw.floor() + if rng.random_bool(0.5) { 0.49 } else { 0.99 };
            Item { id: FIRST_ITEM_ID + i as i64, type_index, brand, attributes, size, price }
        })
        .collect()
}

/// Item indices per product type, for the qrels and the simulated engine.
pub fn by_type(items: &[Item], n_types: usize) -> Vec<Vec<usize>> {
    let mut out = vec![Vec::new(); n_types];
    for (i, item) in items.iter().enumerate() {
        out[item.type_index].push(i);
    }
    out
}
