//! The hand-written knowledge behind the sample world (`data_samples/world.toml`): the catalogue's
//! product types, and the shopper needs that only reasoning maps to them.

use serde::Deserialize;

/// The knowledge table as committed; compiled in so `datagen` needs no file at run time.
pub const WORLD_TOML: &str = include_str!("../../../data_samples/world.toml");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct World {
    pub category: Vec<Category>,
    pub need: Vec<Need>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Category {
    pub path: String,
    pub product: Vec<ProductType>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductType {
    #[serde(rename = "type")]
    pub name: String,
    pub brands: Vec<String>,
    pub attributes: Vec<String>,
    pub sizes: Vec<String>,
    pub price: [f64; 2],
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Need {
    pub pattern: String,
    pub queries: Vec<String>,
    pub relevant: Vec<String>,
    #[serde(default)]
    pub partial: Vec<String>,
    #[serde(default)]
    pub lexical_trap: Vec<String>,
}

/// A flattened product type: index into [`World::types`] order, with its category.
#[derive(Debug)]
pub struct TypeRef<'w> {
    pub category: &'w str,
    pub product: &'w ProductType,
}

/// A need's reference to a product type, optionally restricted to one attribute:
/// `"sofa bed[no metal bar]"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub type_index: usize,
    pub attribute: Option<usize>,
}

pub const PATTERNS: [&str; 5] = ["comparative", "use_case", "problem_solution", "negation", "implicit_attribute"];

impl World {
    /// Parses and cross-checks the knowledge table: every reference must resolve.
    pub fn load(text: &str) -> Result<World, String> {
        let world: World = toml::from_str(text).map_err(|e| format!("data_samples/world.toml: {e}"))?;
        for need in &world.need {
            if !PATTERNS.contains(&need.pattern.as_str()) {
                return Err(format!("world.toml: unknown pattern {:?} (valid: {})", need.pattern, PATTERNS.join(", ")));
            }
            for r in need.relevant.iter().chain(&need.partial).chain(&need.lexical_trap) {
                world.target(r)?;
            }
        }
        Ok(world)
    }

    /// Product types in file order; a type's position here is its index everywhere else.
    pub fn types(&self) -> Vec<TypeRef<'_>> {
        self.category
            .iter()
            .flat_map(|c| c.product.iter().map(move |p| TypeRef { category: &c.path, product: p }))
            .collect()
    }

    /// Resolves `"type"` or `"type[attribute]"`.
    pub fn target(&self, reference: &str) -> Result<Target, String> {
        let (name, attribute) = match reference.split_once('[') {
            Some((name, rest)) => (name.trim(), Some(rest.trim_end_matches(']').trim())),
            None => (reference.trim(), None),
        };
        let types = self.types();
        let type_index = types
            .iter()
            .position(|t| t.product.name == name)
            .ok_or_else(|| format!("world.toml: need refers to unknown product type {name:?}"))?;
        let attribute = match attribute {
            None => None,
            Some(a) => Some(
                types[type_index]
                    .product
                    .attributes
                    .iter()
                    .position(|x| x == a)
                    .ok_or_else(|| format!("world.toml: {name:?} has no attribute {a:?}"))?,
            ),
        };
        Ok(Target { type_index, attribute })
    }

    /// The product types a need calls for, as shoppers and titles name them: an attribute
    /// restriction reads "{attribute} {type}". What the reference teacher answers and the `needs`
    /// table's `relevant_types`.
    pub fn relevant_types(&self, need: &Need) -> Result<Vec<String>, String> {
        let types = self.types();
        need.relevant
            .iter()
            .map(|reference| {
                let target = self.target(reference)?;
                let product = &types[target.type_index].product;
                Ok(match target.attribute {
                    Some(a) => format!("{} {}", product.attributes[a], product.name),
                    None => product.name.clone(),
                })
            })
            .collect()
    }
}
