//! `lrem-pipeline sql` only reads. A statement is checked before planning, by kind, so a refusal
//! names what was refused; DataFusion's own `SQLOptions` check runs after as a second guard.

use datafusion::sql::parser::{DFParser, Statement};
use datafusion::sql::sqlparser::ast::Statement as Sql;

use crate::Error;

/// Splits `text` into statements and refuses any that would write or change state.
pub fn read_only_statements(text: &str) -> Result<Vec<String>, Error> {
    let statements = DFParser::parse_sql(text)?;
    statements
        .into_iter()
        .map(|s| match refusal(&s) {
            None => Ok(s.to_string()),
            Some(what) => Err(Error::Usage(format!(
                "refused {what}: `lrem-pipeline sql` is read-only. Use SELECT, WITH, EXPLAIN, SHOW or DESCRIBE \
                 (tables are written by `lrem-pipeline run`)."
            ))),
        })
        .collect()
}

/// What kind of statement `s` is, when it is not a read.
fn refusal(s: &Statement) -> Option<String> {
    match s {
        Statement::Statement(inner) => match inner.as_ref() {
            Sql::Query(_) | Sql::ShowTables { .. } | Sql::ShowColumns { .. } | Sql::ExplainTable { .. } => None,
            Sql::Explain { statement, analyze, .. } => {
                if *analyze {
                    // EXPLAIN ANALYZE executes its statement.
                    refusal(&Statement::Statement(statement.clone())).map(|w| format!("EXPLAIN ANALYZE of {w}"))
                } else {
                    None
                }
            }
            other => Some(first_words(&other.to_string())),
        },
        Statement::Explain(e) => refusal(&e.statement),
        Statement::CreateExternalTable(_) => Some("CREATE EXTERNAL TABLE".into()),
        Statement::CopyTo(_) => Some("COPY".into()),
        Statement::Reset(_) => Some("RESET".into()),
    }
}

fn first_words(sql: &str) -> String {
    sql.split_whitespace().take(2).collect::<Vec<_>>().join(" ").to_uppercase()
}
