//! `cargo xtask analyze`: what any layer (a zip or an unpacked folder, this tool's or anybody's)
//! is made of, what the pruning rules would still remove, and, with `--diff`, what changed
//! between two layers.
//!
//! Reading (`read`) gives a flat file list; `attribute` assigns each file to a distribution
//! from the `.dist-info` folders found anywhere in the tree; `report` and `pruning` are
//! arithmetic over that, `text` and `html` show it. Every data file (rules, the provider list)
//! is found beside the spec.

mod attribute;
mod deps;
mod diff;
mod html;
pub mod imports;
mod pruning;
mod read;
mod report;
pub(crate) mod scan;
mod text;

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{Context, Result};
use camino::{Utf8Path, Utf8PathBuf};

pub use attribute::{attribute, Kind, Layer};
pub use report::Analysis;

/// What `analyze` looks at and prints.
#[derive(Debug, Clone, Default)]
pub struct AnalyzeOptions {
    /// A layer zip or an unpacked layer folder (default: the last layer built).
    pub layer: Option<Utf8PathBuf>,
    pub json: bool,
    /// Also write a self-contained HTML page with a treemap of the layer.
    pub html: Option<Utf8PathBuf>,
    /// Report which providers and Python modules the code under this folder refers to.
    pub scan_source: Option<Utf8PathBuf>,
    /// The spec whose requirements, rules and data apply.
    pub spec: Option<Utf8PathBuf>,
    /// The spec used when none is given: when this tool built the layer from it, its
    /// requirements apply; its folder holds the data files either way.
    pub default_spec: Utf8PathBuf,
    /// How many of the largest files to list.
    pub top: usize,
    /// Compare two layers instead: OLD, NEW.
    pub diff: Option<(Utf8PathBuf, Utf8PathBuf)>,
    /// Profile the import of the spec's preload instead of (text, JSON) or beside (HTML) the
    /// sizes.
    pub imports: Option<imports::ImportsOptions>,
}

/// `cargo xtask analyze`: prints the analysis (or the diff).
pub fn run(options: &AnalyzeOptions) -> Result<ExitCode> {
    if let Some((old, new)) = &options.diff {
        return diff::run(old, new, options.json, options.imports.as_ref());
    }
    let default_spec_path = &options.default_spec;
    let layer_path = match &options.layer {
        Some(p) => p.clone(),
        None => {
            let spec_path = options.spec.as_ref().unwrap_or(default_spec_path);
            default_layer(&crate::spec::Spec::load(spec_path)?)?
        }
    };
    let own = own_report(&layer_path);
    // The spec applies when given, or when this tool built the layer from the default one.
    let spec = match &options.spec {
        Some(p) => Some(crate::spec::Spec::load(p)?),
        None => own.as_ref().and_then(|(_, r)| {
            crate::spec::Spec::load(default_spec_path)
                .ok()
                .filter(|s| s.layer.name == r.name)
        }),
    };
    // Data files live beside the spec: the given one, else the default one.
    let data_dir = match &spec {
        Some(s) => s.data_dir(),
        None => default_spec_path
            .parent()
            .map_or_else(Utf8PathBuf::new, Utf8Path::to_owned),
    };
    let providers = match &options.scan_source {
        Some(_) => {
            let path = data_dir.join("litellm-providers.toml");
            Some((crate::spec::ProvidersFile::load(&path)?, path))
        }
        None => None,
    };
    let also_read: Vec<String> = providers
        .iter()
        .filter_map(|(data, _)| data.providers_source.clone())
        .collect();
    let raw = read::read_layer(&layer_path, &also_read)
        .with_context(|| format!("reading the layer {layer_path}"))?;
    let layer = attribute(raw);
    let mut analysis = report::summarize(&layer, &layer_path, options.top);
    analysis.requirements = report::requirements(&layer, spec.as_ref());
    analysis.pth_files = report::pth_files(&layer, spec.as_ref())?;
    let rules_path = match &spec {
        Some(s) => s.data_path(&s.prune.rules),
        None => data_dir.join("rules.toml"),
    };
    let sources = read::Sources::open(&layer_path)?;
    analysis.pruning = Some(pruning::pruning(
        &layer,
        &rules_path,
        spec.as_ref(),
        &|p| sources.read(p),
    )?);
    if let (Some(dir), Some((data, data_path))) = (&options.scan_source, &providers) {
        let (names, from) = report::provider_names(&layer, data, data_path);
        let sizes: BTreeMap<String, u64> = analysis
            .distributions
            .iter()
            .map(|d| (d.normalized.clone(), d.bytes))
            .collect();
        let modules = layer.modules();
        let requires = layer.requires();
        let env = layer.env(spec.as_ref());
        analysis.scan = Some(scan::scan_dir(
            dir,
            &names,
            from,
            &data.bare_model_prefixes,
            &scan::LayerModules {
                modules: &modules,
                sizes: &sizes,
                requires: &requires,
                env: &env,
            },
        )?);
    }
    let profile = match &options.imports {
        Some(o) => Some(imports::measure(
            &layer_path,
            &layer,
            spec.as_ref(),
            o,
            options.top,
        )?),
        None => None,
    };
    print_and_write(
        options,
        &analysis,
        &layer,
        &layer_path,
        own.as_ref(),
        profile.as_ref(),
    )
}

/// Writes the text beside a zip this tool built and the HTML page if asked; prints the analysis.
fn print_and_write(
    options: &AnalyzeOptions,
    analysis: &Analysis,
    layer: &Layer,
    layer_path: &Utf8Path,
    own: Option<&(Utf8PathBuf, crate::build::report::Report)>,
    profile: Option<&imports::ImportReport>,
) -> Result<ExitCode> {
    let text = analysis.to_text();
    if let (Some((report_path, _)), None) = (own, profile) {
        if layer_path.extension() == Some("zip") {
            let dest = report_path.with_file_name("layer-size-analysis.txt");
            crate::util::write_bytes_atomic(&dest, text.as_bytes())
                .with_context(|| format!("writing {dest}"))?;
            eprintln!("wrote {dest}");
        }
    }
    if let Some(html_path) = &options.html {
        let page = html::page(analysis, layer, profile);
        crate::util::write_bytes_atomic(html_path, page.as_bytes())
            .with_context(|| format!("writing {html_path}"))?;
        eprintln!("wrote {html_path}");
    }
    if let Some(p) = profile {
        if options.json {
            println!("{}", serde_json::to_string_pretty(p)?);
        } else {
            print!("{}", p.to_text(options.top));
        }
    } else if options.json {
        println!("{}", serde_json::to_string_pretty(analysis)?);
    } else {
        print!("{text}");
    }
    Ok(ExitCode::SUCCESS)
}

/// The last layer built: the spec's default architecture first, else the newest report.json
/// under target/layer/.
fn default_layer(spec: &crate::spec::Spec) -> Result<Utf8PathBuf> {
    let mut candidates = vec![crate::core::default_out_dir(spec.layer.default_arch)];
    let layer_dir = crate::core::target_dir().join("layer");
    if let Ok(dirs) = fs_err::read_dir(&layer_dir) {
        let mut others: Vec<(std::time::SystemTime, Utf8PathBuf)> = dirs
            .filter_map(|d| d.ok())
            .filter_map(|d| crate::util::utf8(d.path()).ok())
            .filter_map(|p| {
                let t = fs_err::metadata(p.join("report.json"))
                    .ok()?
                    .modified()
                    .ok()?;
                Some((t, p))
            })
            .collect();
        others.sort();
        candidates.extend(others.into_iter().rev().map(|(_, p)| p));
    }
    for dir in candidates {
        let report = dir.join("report.json");
        if let Ok(text) = fs_err::read_to_string(&report) {
            let r: crate::build::report::Report =
                serde_json::from_str(&text).with_context(|| format!("reading {report}"))?;
            if r.zip_path.exists() {
                return Ok(r.zip_path);
            }
        }
    }
    anyhow::bail!(
        "no layer given and none built under {layer_dir}: run `cargo xtask layer` or pass a zip or folder"
    )
}

/// `report.json` written by this tool beside a zip (or beside the `tree/` folder it built from).
fn own_report(layer: &Utf8Path) -> Option<(Utf8PathBuf, crate::build::report::Report)> {
    let dir = layer.parent()?;
    let path = dir.join("report.json");
    let text = fs_err::read_to_string(&path).ok()?;
    let report = serde_json::from_str(&text).ok()?;
    Some((path, report))
}

/// A layer's plain numbers and its attribution (for `--diff`).
fn read_attributed(path: &Utf8Path) -> Result<(Analysis, Layer)> {
    let raw = read::read_layer(path, &[]).with_context(|| format!("reading the layer {path}"))?;
    let layer = attribute(raw);
    Ok((report::summarize(&layer, path, 0), layer))
}
