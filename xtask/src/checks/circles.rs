//! Check 10, module circles: within each crate of the workspace, no module
//! may reach itself through the modules its code names.
//!
//! A module *names* another when its code (tests left out: items under
//! `#[cfg(test)]`) holds a path into it: a `use` of `crate::…`, `self::…`,
//! `super::…` or of a child module, or such a path in a type, an
//! expression or a macro's tokens (`crate::marker::sync(…)`). A path
//! through a name another module imports is followed to where that name
//! comes from (`super::Finding`, re-exported by `checks` from
//! `checks::finding`, names `checks::finding`). A parent's re-exports of
//! its descendants (`pub use cache::Cache;`) and `mod` declarations are the
//! crate's surface, not dependencies: they are no edges. Names brought in
//! by a glob import and then used bare are not seen.
//!
//! Every target root is read: `src/lib.rs`, `src/main.rs`, `src/bin/*.rs`
//! and the top-level files of `tests/`, `benches/` and `examples/`.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

use proc_macro2::{Delimiter, Spacing, TokenStream, TokenTree};
use syn::{
    Attribute, ImplItem, Item, TraitItem, UseTree, Visibility, spanned::Spanned, visit::Visit,
};

use super::{Finding, Outcome};
use crate::workspace::{self, relative};

/// Crates whose circles are reported as warnings, not failures. Every
/// other crate fails on one; a crate listed here without a circle is
/// reported, to be taken off.
pub const WARN_ONLY: [&str; 4] = [
    "storage-core",
    "storage-fetch",
    "storage-mem",
    "storage-mmap",
];

/// How many imports a path is followed through before giving up (a chain
/// of re-exports is short; a loop of them is not Rust).
const MAX_HOPS: usize = 16;

/// One module of a crate target.
#[derive(Debug)]
struct Module {
    /// Its path below the crate root (`[]` for the root).
    path: Vec<String>,
    /// The file that holds it.
    file: PathBuf,
    /// Its child modules (declared with `mod`), by name.
    children: BTreeMap<String, usize>,
    /// What its `use` items bind: name → the path it stands for, as
    /// written (relative to this module).
    bindings: BTreeMap<String, Vec<String>>,
    /// The paths its code names.
    references: Vec<Reference>,
}

/// A path a module names.
#[derive(Clone, Debug)]
struct Reference {
    /// The path as written (`crate::a::B`, `super::x`, `child::f`).
    segments: Vec<String>,
    /// Its line in the module's file.
    line: usize,
    /// Part of a `use` item visible outside the module (a re-export).
    exported: bool,
}

/// An edge of the module graph: `from` names `to`, first at `line`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Edge {
    from: usize,
    to: usize,
    line: usize,
}

/// Whether `attrs` hold `#[cfg(test)]`.
fn is_test(attrs: &[Attribute]) -> bool {
    attrs.iter().any(|attr| {
        attr.path().is_ident("cfg") && attr.parse_args::<syn::Ident>().is_ok_and(|id| id == "test")
    })
}

/// The attributes of `item`.
fn item_attrs(item: &Item) -> &[Attribute] {
    match item {
        Item::Const(i) => &i.attrs,
        Item::Enum(i) => &i.attrs,
        Item::ExternCrate(i) => &i.attrs,
        Item::Fn(i) => &i.attrs,
        Item::ForeignMod(i) => &i.attrs,
        Item::Impl(i) => &i.attrs,
        Item::Macro(i) => &i.attrs,
        Item::Mod(i) => &i.attrs,
        Item::Static(i) => &i.attrs,
        Item::Struct(i) => &i.attrs,
        Item::Trait(i) => &i.attrs,
        Item::TraitAlias(i) => &i.attrs,
        Item::Type(i) => &i.attrs,
        Item::Union(i) => &i.attrs,
        Item::Use(i) => &i.attrs,
        _ => &[],
    }
}

/// The leaves of a use tree under `prefix`: (path, name it binds; `None`
/// for a glob).
fn use_leaves(tree: &UseTree, prefix: &[String], out: &mut Vec<(Vec<String>, Option<String>)>) {
    let with = |name: &syn::Ident| {
        let mut path = prefix.to_vec();
        path.push(name.to_string());
        path
    };
    match tree {
        UseTree::Path(path) => use_leaves(&path.tree, &with(&path.ident), out),
        UseTree::Name(name) if name.ident == "self" => {
            let bound = prefix.last().cloned();
            out.push((prefix.to_vec(), bound));
        }
        UseTree::Name(name) => out.push((with(&name.ident), Some(name.ident.to_string()))),
        UseTree::Rename(rename) => {
            let mut path = prefix.to_vec();
            if rename.ident != "self" {
                path.push(rename.ident.to_string());
            }
            out.push((path, Some(rename.rename.to_string())));
        }
        UseTree::Glob(_) => out.push((prefix.to_vec(), None)),
        UseTree::Group(group) => {
            for tree in &group.items {
                use_leaves(tree, prefix, out);
            }
        }
    }
}

/// Collects the paths of one module's own code (its child modules and
/// test code left out).
struct Collector<'a> {
    /// Names of the module's children: a path may start with one.
    children: &'a BTreeSet<String>,
    references: Vec<Reference>,
    bindings: BTreeMap<String, Vec<String>>,
}

impl Collector<'_> {
    /// Whether a path starting with `first` may lead to a module of the
    /// crate.
    fn internal(&self, first: &str) -> bool {
        matches!(first, "crate" | "self" | "super") || self.children.contains(first)
    }

    fn push(&mut self, segments: Vec<String>, line: usize, exported: bool) {
        if segments.first().is_some_and(|first| self.internal(first)) {
            self.references.push(Reference {
                segments,
                line,
                exported,
            });
        }
    }

    /// Paths written in a macro's tokens: `crate :: a :: b` and the like.
    fn scan_tokens(&mut self, tokens: TokenStream) {
        let trees: Vec<TokenTree> = tokens.into_iter().collect();
        let is_colons = |at: usize| {
            matches!((trees.get(at), trees.get(at + 1)),
                (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b)))
                    if a.as_char() == ':' && a.spacing() == Spacing::Joint && b.as_char() == ':')
        };
        let mut at = 0;
        while at < trees.len() {
            match &trees[at] {
                TokenTree::Group(group) => {
                    if group.delimiter() != Delimiter::None || !group.stream().is_empty() {
                        self.scan_tokens(group.stream());
                    }
                    at += 1;
                }
                TokenTree::Ident(first)
                    if self.internal(&first.to_string())
                        && is_colons(at + 1)
                        && (at < 2 || !is_colons(at - 2)) =>
                {
                    let line = first.span().start().line;
                    let mut segments = vec![first.to_string()];
                    let mut next = at + 1;
                    while is_colons(next) {
                        let Some(TokenTree::Ident(ident)) = trees.get(next + 2) else {
                            break;
                        };
                        segments.push(ident.to_string());
                        next += 3;
                    }
                    self.push(segments, line, false);
                    at = next;
                }
                _ => at += 1,
            }
        }
    }
}

impl<'ast> Visit<'ast> for Collector<'_> {
    fn visit_item(&mut self, item: &'ast Item) {
        // Child modules are modules of their own; test code is no edge.
        if matches!(item, Item::Mod(_)) || is_test(item_attrs(item)) {
            return;
        }
        syn::visit::visit_item(self, item);
    }

    fn visit_impl_item(&mut self, item: &'ast ImplItem) {
        let attrs = match item {
            ImplItem::Const(i) => &i.attrs,
            ImplItem::Fn(i) => &i.attrs,
            ImplItem::Type(i) => &i.attrs,
            ImplItem::Macro(i) => &i.attrs,
            _ => return syn::visit::visit_impl_item(self, item),
        };
        if !is_test(attrs) {
            syn::visit::visit_impl_item(self, item);
        }
    }

    fn visit_trait_item(&mut self, item: &'ast TraitItem) {
        let attrs = match item {
            TraitItem::Const(i) => &i.attrs,
            TraitItem::Fn(i) => &i.attrs,
            TraitItem::Type(i) => &i.attrs,
            TraitItem::Macro(i) => &i.attrs,
            _ => return syn::visit::visit_trait_item(self, item),
        };
        if !is_test(attrs) {
            syn::visit::visit_trait_item(self, item);
        }
    }

    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        let exported = !matches!(item.vis, Visibility::Inherited);
        let line = item.span().start().line;
        let mut leaves = Vec::new();
        use_leaves(&item.tree, &[], &mut leaves);
        for (path, bound) in leaves {
            if let Some(name) = bound.filter(|_| path.first().is_some_and(|f| self.internal(f))) {
                self.bindings.insert(name, path.clone());
            }
            self.push(path, line, exported);
        }
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        if path.leading_colon.is_none() && path.segments.len() >= 2 {
            let segments = path.segments.iter().map(|s| s.ident.to_string()).collect();
            self.push(segments, path.span().start().line, false);
        }
        syn::visit::visit_path(self, path);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        self.scan_tokens(mac.tokens.clone());
        syn::visit::visit_macro(self, mac);
    }
}

/// The file of module `name` declared in `file`, whose child modules live
/// in `dir`; a `#[path]` (or `#[cfg_attr(…, path = …)]`: the first that
/// exists) is relative to `file`'s own directory.
fn module_file(file: &Path, dir: &Path, name: &str, attrs: &[Attribute]) -> Option<PathBuf> {
    let here = file.parent().unwrap_or(dir);
    let mut candidates = Vec::new();
    for attr in attrs {
        let tokens = match &attr.meta {
            syn::Meta::NameValue(value) if attr.path().is_ident("path") => {
                if let syn::Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(lit),
                    ..
                }) = &value.value
                {
                    candidates.push(here.join(lit.value()));
                }
                continue;
            }
            syn::Meta::List(list) if attr.path().is_ident("cfg_attr") => list.tokens.clone(),
            _ => continue,
        };
        // `cfg_attr(predicate, path = "file.rs")`: the string after `path =`.
        let trees: Vec<TokenTree> = tokens.into_iter().collect();
        for window in trees.windows(3) {
            if let [
                TokenTree::Ident(key),
                TokenTree::Punct(eq),
                TokenTree::Literal(lit),
            ] = window
                && key == "path"
                && eq.as_char() == '='
            {
                let text = lit.to_string();
                candidates.push(here.join(text.trim_matches('"')));
            }
        }
    }
    candidates.push(dir.join(format!("{name}.rs")));
    candidates.push(dir.join(name).join("mod.rs"));
    candidates.into_iter().find(|path| path.is_file())
}

/// A crate target's modules, read from its root file.
struct Target {
    modules: Vec<Module>,
}

impl Target {
    fn read(root_file: &Path) -> Result<Self, String> {
        let mut target = Self {
            modules: Vec::new(),
        };
        let file = parse(root_file)?;
        let dir = root_file.parent().unwrap_or(Path::new(".")).to_path_buf();
        target.load(&[], root_file, &file.items, &dir)?;
        Ok(target)
    }

    /// Adds the module at `path` holding `items` (in `file`; its child
    /// modules' files in `dir`), and its children; returns its index.
    fn load(
        &mut self,
        path: &[String],
        file: &Path,
        items: &[Item],
        dir: &Path,
    ) -> Result<usize, String> {
        let index = self.modules.len();
        self.modules.push(Module {
            path: path.to_vec(),
            file: file.to_path_buf(),
            children: BTreeMap::new(),
            bindings: BTreeMap::new(),
            references: Vec::new(),
        });
        let declared: Vec<&syn::ItemMod> = items
            .iter()
            .filter_map(|item| match item {
                Item::Mod(module) if !is_test(&module.attrs) => Some(module),
                _ => None,
            })
            .collect();
        let names: BTreeSet<String> = declared.iter().map(|m| m.ident.to_string()).collect();
        let mut collector = Collector {
            children: &names,
            references: Vec::new(),
            bindings: BTreeMap::new(),
        };
        for item in items {
            collector.visit_item(item);
        }
        let (references, bindings) = (collector.references, collector.bindings);
        self.modules[index].references = references;
        self.modules[index].bindings = bindings;
        for module in declared {
            let name = module.ident.to_string();
            let mut child_path = path.to_vec();
            child_path.push(name.clone());
            let child = if let Some((_, inline)) = &module.content {
                self.load(&child_path, file, inline, &dir.join(&name))?
            } else {
                let child_file = module_file(file, dir, &name, &module.attrs).ok_or_else(|| {
                    format!("the file of module `{name}` declared in {}", file.display())
                })?;
                let parsed = parse(&child_file)?;
                let mod_rs = child_file.file_name().is_some_and(|n| n == "mod.rs");
                let child_dir = if mod_rs {
                    child_file.parent().unwrap_or(dir).to_path_buf()
                } else {
                    dir.join(&name)
                };
                self.load(&child_path, &child_file, &parsed.items, &child_dir)?
            };
            self.modules[index].children.insert(name, child);
        }
        Ok(index)
    }

    /// The index of the module at `path` (below the root), if any.
    fn find(&self, path: &[String]) -> Option<usize> {
        let mut at = 0;
        for segment in path {
            at = *self.modules[at].children.get(segment)?;
        }
        Some(at)
    }

    /// The module that `segments`, written in module `from`, leads to:
    /// the deepest module on the path, following imports.
    fn resolve(&self, from: usize, segments: &[String], hops: usize) -> Option<usize> {
        let (mut at, rest) = match segments.first().map(String::as_str) {
            Some("crate") => (0, &segments[1..]),
            Some("self") => (from, &segments[1..]),
            Some("super") => {
                let supers = segments.iter().take_while(|s| *s == "super").count();
                let path = &self.modules[from].path;
                let parent = path.get(..path.len().checked_sub(supers)?)?;
                (self.find(parent)?, &segments[supers..])
            }
            Some(_) => (from, segments),
            None => return None,
        };
        for (i, segment) in rest.iter().enumerate() {
            let module = &self.modules[at];
            if let Some(&child) = module.children.get(segment) {
                at = child;
            } else if let Some(bound) = module.bindings.get(segment).filter(|_| hops < MAX_HOPS) {
                let mut through = bound.clone();
                through.extend_from_slice(&rest[i + 1..]);
                return self.resolve(at, &through, hops + 1).or(Some(at));
            } else {
                break;
            }
        }
        Some(at)
    }

    /// Whether module `a` is `b` or one of its ancestors.
    fn encloses(&self, a: usize, b: usize) -> bool {
        self.modules[b].path.starts_with(&self.modules[a].path)
    }

    /// The edges of the module graph, one per (from, to), at its first
    /// line.
    fn edges(&self) -> Vec<Edge> {
        let mut edges: BTreeMap<(usize, usize), usize> = BTreeMap::new();
        for (from, module) in self.modules.iter().enumerate() {
            for reference in &module.references {
                let Some(to) = self.resolve(from, &reference.segments, 0) else {
                    continue;
                };
                // A parent re-exporting its descendants is its surface.
                if to == from || (reference.exported && self.encloses(from, to)) {
                    continue;
                }
                let line = edges.entry((from, to)).or_insert(reference.line);
                *line = (*line).min(reference.line);
            }
        }
        edges
            .into_iter()
            .map(|((from, to), line)| Edge { from, to, line })
            .collect()
    }

    fn name(&self, module: usize) -> String {
        let path = &self.modules[module].path;
        if path.is_empty() {
            "crate".to_string()
        } else {
            path.join("::")
        }
    }
}

fn parse(path: &Path) -> Result<syn::File, String> {
    let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    syn::parse_file(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// The strongly connected components of more than one module (Tarjan's
/// algorithm), each sorted.
fn circles(nodes: usize, edges: &[Edge]) -> Vec<Vec<usize>> {
    struct Walk {
        next: Vec<Vec<usize>>,
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on_stack: Vec<bool>,
        stack: Vec<usize>,
        counter: usize,
        found: Vec<Vec<usize>>,
    }
    impl Walk {
        fn visit(&mut self, node: usize) {
            self.index[node] = Some(self.counter);
            self.low[node] = self.counter;
            self.counter += 1;
            self.stack.push(node);
            self.on_stack[node] = true;
            for next in self.next[node].clone() {
                match self.index[next] {
                    None => {
                        self.visit(next);
                        self.low[node] = self.low[node].min(self.low[next]);
                    }
                    Some(index) if self.on_stack[next] => {
                        self.low[node] = self.low[node].min(index);
                    }
                    Some(_) => {}
                }
            }
            if Some(self.low[node]) == self.index[node] {
                let mut component = Vec::new();
                while let Some(top) = self.stack.pop() {
                    self.on_stack[top] = false;
                    component.push(top);
                    if top == node {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort_unstable();
                    self.found.push(component);
                }
            }
        }
    }
    let mut next = vec![Vec::new(); nodes];
    for edge in edges {
        next[edge.from].push(edge.to);
    }
    let mut walk = Walk {
        next,
        index: vec![None; nodes],
        low: vec![0; nodes],
        on_stack: vec![false; nodes],
        stack: Vec::new(),
        counter: 0,
        found: Vec::new(),
    };
    for node in 0..nodes {
        if walk.index[node].is_none() {
            walk.visit(node);
        }
    }
    walk.found.sort();
    walk.found
}

/// The root files of a crate's targets.
fn target_roots(dir: &Path) -> Vec<PathBuf> {
    let mut roots: Vec<PathBuf> = ["src/lib.rs", "src/main.rs"]
        .iter()
        .map(|file| dir.join(file))
        .filter(|path| path.is_file())
        .collect();
    for folder in ["src/bin", "tests", "benches", "examples"] {
        let mut files: Vec<PathBuf> = fs::read_dir(dir.join(folder))
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| entry.path())
            .filter(|path| path.is_file() && path.extension().is_some_and(|ext| ext == "rs"))
            .collect();
        files.sort();
        roots.extend(files);
    }
    roots
}

/// The circles of the crate target rooted at `root_file`, one finding
/// each: its modules and the edges between them, at the first edge's line.
fn target_findings(root: &Path, krate: &str, root_file: &Path) -> Vec<Finding> {
    let target = match Target::read(root_file) {
        Ok(target) => target,
        Err(error) => {
            return vec![Finding::new(
                relative(root, root_file),
                format!("cannot read the modules: {error}"),
            )];
        }
    };
    let edges = target.edges();
    let mut findings = Vec::new();
    for circle in circles(target.modules.len(), &edges) {
        let inside: Vec<&Edge> = edges
            .iter()
            .filter(|e| circle.contains(&e.from) && circle.contains(&e.to))
            .collect();
        let described: Vec<String> = inside
            .iter()
            .map(|e| {
                format!(
                    "{} → {} ({}:{})",
                    target.name(e.from),
                    target.name(e.to),
                    relative(root, &target.modules[e.from].file),
                    e.line
                )
            })
            .collect();
        let mut names: Vec<String> = circle.iter().map(|&m| target.name(m)).collect();
        names.sort();
        let first = inside[0];
        findings.push(Finding::new(
            format!(
                "{}:{}",
                relative(root, &target.modules[first.from].file),
                first.line
            ),
            format!(
                "import circle in `{krate}` between {}: {}",
                names.join(", "),
                described.join(", ")
            ),
        ));
    }
    findings
}

/// No module circles in any crate of the workspace at `root`;
/// those of the crates in [`WARN_ONLY`] are warnings.
pub fn check(root: &Path) -> Outcome {
    let mut outcome = Outcome::default();
    for krate in workspace::crates(root) {
        let findings: Vec<Finding> = target_roots(&krate.dir)
            .iter()
            .flat_map(|root_file| target_findings(root, &krate.name, root_file))
            .collect();
        if !WARN_ONLY.contains(&krate.name.as_str()) {
            outcome.failures.extend(findings);
        } else if findings.is_empty() {
            outcome.warnings.push(Finding::new(
                "xtask/src/checks/circles.rs",
                format!(
                    "`{}` has no module circle now: take it off `WARN_ONLY`",
                    krate.name
                ),
            ));
        } else {
            outcome.warnings.extend(findings);
        }
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_crate_has_an_import_circle_but_those_listed() {
        let outcome = check(&workspace::default_root());
        assert_eq!(outcome.failures, Vec::new());
        assert!(
            !outcome
                .warnings
                .iter()
                .any(|w| w.message.contains("`storage-cache`")),
            "{:?}",
            outcome.warnings
        );
    }

    /// The findings of a crate made of `files` (path, text).
    fn findings_of(files: &[(&str, &str)]) -> Vec<Finding> {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let path = dir.path().join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
        }
        target_findings(dir.path(), "scratch", &dir.path().join("src/lib.rs"))
    }

    #[test]
    fn a_circle_through_uses_paths_and_macros_is_found_with_its_edges() {
        let found = findings_of(&[
            ("src/lib.rs", "mod a;\nmod b;\nmod c;\nmod d;\n"),
            ("src/a.rs", "use crate::b::B;\n"),
            ("src/b.rs", "pub fn f() -> u8 {\n    crate::c::g()\n}\n"),
            (
                "src/c.rs",
                "pub fn g() -> u8 {\n    matches!(1, crate::a::X) as u8\n}\n",
            ),
            ("src/d.rs", "use super::a;\n"),
        ]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].location, "src/a.rs:1");
        for part in [
            "between a, b, c",
            "a → b (src/a.rs:1)",
            "b → c (src/b.rs:2)",
            "c → a (src/c.rs:2)",
        ] {
            assert!(found[0].message.contains(part), "{part}: {found:?}");
        }
    }

    #[test]
    fn re_exports_parents_tests_and_nested_files_make_no_circle() {
        let found = findings_of(&[
            (
                "src/lib.rs",
                "mod checks;\nmod work;\npub use checks::Finding;\npub struct Options;\n",
            ),
            (
                "src/checks/mod.rs",
                "mod finding;\nmod layering;\npub use finding::Finding;\npub fn all() { layering::run(); }\n",
            ),
            (
                "src/checks/finding.rs",
                "pub struct Finding(crate::Options);\n",
            ),
            (
                "src/checks/layering.rs",
                "use super::Finding;\npub fn run() { crate::work::go(); }\n#[cfg(test)]\nmod tests {\n    use crate::checks::all;\n}\n",
            ),
            (
                "src/work.rs",
                "pub fn go() -> Option<crate::Finding> { None }\n#[cfg(test)]\nfn back() { crate::checks::all(); }\n",
            ),
        ]);
        assert_eq!(found, Vec::new());
        // Without the re-export followed, `work` naming `crate::Finding`
        // would not name `checks::finding`: name `checks` itself instead.
        let found = findings_of(&[
            ("src/lib.rs", "mod checks;\nmod work;\n"),
            (
                "src/checks/mod.rs",
                "mod layering;\npub struct Finding;\npub fn all() { layering::run(); }\n",
            ),
            (
                "src/checks/layering.rs",
                "pub fn run() { crate::work::go(); }\n",
            ),
            (
                "src/work.rs",
                "pub fn go() -> Option<crate::checks::Finding> { None }\n",
            ),
        ]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0]
                .message
                .contains("between checks, checks::layering, work"),
            "{found:?}"
        );
    }

    #[test]
    fn platform_files_chosen_by_path_attributes_are_read() {
        let found = findings_of(&[
            ("src/lib.rs", "mod sys;\nmod open;\n"),
            (
                "src/sys/mod.rs",
                "#[cfg_attr(unix, path = \"unix.rs\")]\n#[cfg_attr(windows, path = \"windows.rs\")]\nmod platform;\npub fn platform_probe() { platform::probe(); }\n",
            ),
            (
                "src/sys/unix.rs",
                "use crate::open::Open;\npub fn probe() {}\n",
            ),
            (
                "src/open.rs",
                "pub struct Open;\nfn f() { crate::sys::platform_probe(); }\n",
            ),
        ]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0]
                .message
                .contains("between open, sys, sys::platform"),
            "{found:?}"
        );
        assert!(found[0].message.contains("open → sys"), "{found:?}");
        assert!(
            found[0]
                .message
                .contains("sys::platform → open (src/sys/unix.rs:1)"),
            "{found:?}"
        );
        assert!(
            found[0].message.contains("sys → sys::platform"),
            "{found:?}"
        );
    }
}
