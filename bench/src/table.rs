//! A table of results, built once and rendered twice: padded columns for
//! the terminal, Markdown for `BENCHMARKS.md`.

/// A column: its heading, its width on the terminal and its alignment.
pub struct Column {
    pub name: &'static str,
    pub width: usize,
    /// Text columns (implementation, operation) are left-aligned, numbers
    /// right-aligned.
    pub left: bool,
}

impl Column {
    pub const fn left(name: &'static str, width: usize) -> Self {
        Self {
            name,
            width,
            left: true,
        }
    }

    pub const fn right(name: &'static str, width: usize) -> Self {
        Self {
            name,
            width,
            left: false,
        }
    }

    fn pad(&self, cell: &str) -> String {
        if self.left {
            format!("{cell:<width$}", width = self.width)
        } else {
            format!("{cell:>width$}", width = self.width)
        }
    }
}

/// A caption, the columns and the rows, each row one cell a column.
pub struct Table {
    pub caption: String,
    pub columns: Vec<Column>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(caption: impl Into<String>, columns: Vec<Column>) -> Self {
        Self {
            caption: caption.into(),
            columns,
            rows: Vec::new(),
        }
    }

    pub fn push(&mut self, row: Vec<String>) {
        debug_assert_eq!(row.len(), self.columns.len());
        self.rows.push(row);
    }

    /// The caption, the headings and the rows, in padded columns.
    pub fn text(&self) -> String {
        let line = |cells: &[String]| {
            let padded: Vec<String> = self
                .columns
                .iter()
                .zip(cells)
                .map(|(column, cell)| column.pad(cell))
                .collect();
            padded.join(" ")
        };
        let headings: Vec<String> = self.columns.iter().map(|c| c.name.to_owned()).collect();
        let mut out = vec![self.caption.clone(), line(&headings)];
        out.extend(self.rows.iter().map(|row| line(row)));
        out.join("\n")
    }

    /// The headings and the rows as a Markdown table (the caption is left to
    /// the document).
    pub fn markdown(&self) -> String {
        let mut out = vec![
            markdown_row(self.columns.iter().map(|c| c.name)),
            markdown_row(
                self.columns
                    .iter()
                    .map(|c| if c.left { "---" } else { "---:" }),
            ),
        ];
        out.extend(
            self.rows
                .iter()
                .map(|row| markdown_row(row.iter().map(String::as_str))),
        );
        out.join("\n")
    }
}

fn markdown_row<'a>(cells: impl Iterator<Item = &'a str>) -> String {
    format!("| {} |", cells.collect::<Vec<_>>().join(" | "))
}

#[cfg(test)]
mod tests {
    use super::{Column, Table};

    fn table() -> Table {
        let mut t = Table::new(
            "caption",
            vec![Column::left("impl", 6), Column::right("ops/s", 7)],
        );
        t.push(vec!["raw".into(), "12345".into()]);
        t
    }

    #[test]
    fn text_pads_each_column() {
        assert_eq!(table().text(), "caption\nimpl     ops/s\nraw      12345");
    }

    #[test]
    fn markdown_aligns_numbers_right() {
        assert_eq!(
            table().markdown(),
            "| impl | ops/s |\n| --- | ---: |\n| raw | 12345 |"
        );
    }
}
