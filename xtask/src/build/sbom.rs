//! `python/sbom.cdx.json`: the layer's software bill of materials, CycloneDX 1.5 JSON. One
//! component per distribution the layer holds (version, license from its METADATA, the sha256
//! of the wheel it was installed from, as the lock pins it) and one for the runtime (CPython,
//! its archive's sha256, and whether that archive is the spec's pinned download).
//!
//! Reproducible: no timestamp, components sorted, and the serial number is derived from the
//! document's own content, so the same inputs give the same bytes.

use std::collections::BTreeMap;
use std::io::Read;

use anyhow::{Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::build::plan::{BuildPlan, Origin};
use crate::build::runtime::RuntimeInfo;
use crate::core::{Owners, RemovedDistribution};
use crate::python::distinfo::{self, License};
use crate::python::wheel::normalize;

/// Where the SBOM goes, relative to the layer root.
pub const SBOM: &str = "python/sbom.cdx.json";

/// The layer the SBOM describes.
#[derive(Debug, Clone)]
pub struct LayerInfo {
    pub name: String,
    pub arch: String,
    pub profile: String,
}

/// One installed distribution.
#[derive(Debug, Clone)]
pub struct DistInfo {
    pub name: String,
    pub version: String,
    pub wheel: String,
    pub url: String,
    pub sha256: String,
    pub licenses: Vec<License>,
}

/// The runtime the layer carries.
#[derive(Debug, Clone)]
pub struct RuntimePart {
    /// The CPython version found in the archive.
    pub version: String,
    /// The archive's file name and sha256.
    pub archive: String,
    pub sha256: String,
    /// The download URL, when the archive is one (never a local path: it differs by machine).
    pub url: Option<String>,
    /// The python-build-standalone release, when the archive is the spec's pinned one.
    pub release: Option<String>,
    /// `None` when the archive is the spec's pinned download; else what it is instead.
    pub not_pinned: Option<String>,
}

/// Writes the SBOM of the staged layer at `stage`: the distributions `owners` installed from
/// `wheel_paths` (in plan order), less those removed whole.
pub fn write(
    plan: &BuildPlan,
    stage: &Utf8Path,
    runtime: &RuntimeInfo,
    owners: &Owners,
    wheel_paths: &[Utf8PathBuf],
    removed: &[RemovedDistribution],
) -> Result<()> {
    let by_file: BTreeMap<&str, (&crate::build::plan::ChosenWheel, &Utf8PathBuf)> = plan
        .wheels
        .iter()
        .zip(wheel_paths)
        .map(|(w, p)| (w.file.as_str(), (w, p)))
        .collect();
    let gone = |name: &str| {
        removed
            .iter()
            .any(|r| r.name == name || normalize(&r.name) == normalize(name))
    };
    let mut dists = Vec::new();
    for (name, version, wheel_file) in owners.dists.iter().filter(|(n, _, _)| !gone(n)) {
        let (chosen, path) = by_file
            .get(wheel_file.as_str())
            .with_context(|| format!("{wheel_file} is installed but not in the plan"))?;
        let metadata = wheel_metadata(path).with_context(|| format!("reading {wheel_file}"))?;
        dists.push(DistInfo {
            name: name.clone(),
            version: version.clone(),
            wheel: wheel_file.clone(),
            url: chosen.url.clone(),
            sha256: chosen.sha256.to_string(),
            licenses: distinfo::licenses(&metadata),
        });
    }
    let source = &plan.runtime;
    let pinned = plan.spec.python.sha256.get(&plan.arch) == Some(&source.sha256);
    let not_pinned = (!pinned).then(|| match source.origin {
        Origin::Explicit if source.file_name.contains("fixture") => {
            "a fixture runtime made by `cargo xtask fixture-runtime` for tests and offline demos (given with --python-archive)".to_owned()
        }
        Origin::Explicit => "an archive given with --python-archive".to_owned(),
        Origin::Pinned | Origin::Mirror => format!(
            "the spec's asset name (from the {} location) with the sha256 given by --python-sha256, not the spec's: e.g. a fixture runtime served in its place",
            origin_name(source.origin)
        ),
    });
    let runtime_part = RuntimePart {
        version: runtime.version.clone(),
        archive: source.file_name.clone(),
        sha256: source.sha256.to_string(),
        url: source
            .location
            .starts_with("https://")
            .then(|| source.location.clone()),
        release: pinned.then(|| plan.spec.python.release.clone()),
        not_pinned,
    };
    let layer = LayerInfo {
        name: plan.spec.layer.name.clone(),
        arch: plan.arch.to_string(),
        profile: plan.profile.name.clone(),
    };
    let text = document(&layer, &runtime_part, &dists, removed);
    crate::util::write_bytes_atomic(&stage.join(SBOM), text.as_bytes())
}

fn origin_name(origin: Origin) -> &'static str {
    match origin {
        Origin::Pinned => "pinned",
        Origin::Mirror => "LAYER_PYTHON_MIRROR",
        Origin::Explicit => "explicit",
    }
}

/// The top-level `*.dist-info/METADATA` of a wheel.
fn wheel_metadata(path: &Utf8Path) -> Result<String> {
    let mut zip = zip::ZipArchive::new(fs_err::File::open(path)?)
        .with_context(|| format!("{path} is not a valid zip"))?;
    let mut name = None;
    for i in 0..zip.len() {
        let entry = zip.by_index_raw(i)?.name()?.to_string();
        let is_metadata = entry
            .split_once('/')
            .is_some_and(|(top, rest)| top.ends_with(".dist-info") && rest == "METADATA");
        if is_metadata {
            name = Some(entry);
            break;
        }
    }
    let name = name.with_context(|| format!("{path} has no .dist-info/METADATA"))?;
    let mut text = String::new();
    zip.by_name(&name)?.read_to_string(&mut text)?;
    Ok(text)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Bom<'a> {
    bom_format: &'static str,
    spec_version: &'static str,
    serial_number: String,
    version: u32,
    metadata: Metadata,
    components: Vec<Component<'a>>,
}

#[derive(Serialize)]
struct Metadata {
    tools: Tools,
    component: Component<'static>,
}

#[derive(Serialize)]
struct Tools {
    components: Vec<Component<'static>>,
}

#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct Component<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(rename = "bom-ref")]
    bom_ref: String,
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    purl: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    licenses: Vec<LicenseChoice<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    hashes: Vec<Hash>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    external_references: Vec<ExternalReference>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    properties: Vec<Property>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum LicenseChoice<'a> {
    Expression { expression: &'a str },
    License { license: LicenseName<'a> },
}

#[derive(Serialize)]
struct LicenseName<'a> {
    name: &'a str,
}

#[derive(Serialize)]
struct Hash {
    alg: &'static str,
    content: String,
}

#[derive(Serialize)]
struct ExternalReference {
    #[serde(rename = "type")]
    kind: &'static str,
    url: String,
    comment: String,
}

#[derive(Serialize)]
struct Property {
    name: String,
    value: String,
}

fn property(name: &str, value: impl Into<String>) -> Property {
    Property {
        name: format!("lambda-layer:{name}"),
        value: value.into(),
    }
}

/// `pkg:pypi/<name>@<version>`, the name PEP 503-normalized, `+` of a local version escaped.
pub fn purl(name: &str, version: &str) -> String {
    format!(
        "pkg:pypi/{}@{}",
        normalize(name),
        version.replace('+', "%2B")
    )
}

/// The SBOM text (pretty JSON, newline-terminated); pure, so that its shape is testable.
pub fn document(
    layer: &LayerInfo,
    runtime: &RuntimePart,
    dists: &[DistInfo],
    removed: &[RemovedDistribution],
) -> String {
    let mut components = vec![runtime_component(runtime)];
    let mut dists: Vec<&DistInfo> = dists.iter().collect();
    dists.sort_by_key(|d| (normalize(&d.name), d.version.clone()));
    components.extend(dists.into_iter().map(dist_component));
    let mut layer_props = vec![
        property("arch", &layer.arch),
        property("profile", &layer.profile),
    ];
    let mut removed: Vec<&RemovedDistribution> = removed.iter().collect();
    removed.sort_by(|a, b| a.name.cmp(&b.name));
    for r in removed {
        layer_props.push(property(
            "removed-distribution",
            format!(
                "{} {} (rule {}): not in the layer",
                r.name, r.version, r.rule
            ),
        ));
    }
    let mut bom = Bom {
        bom_format: "CycloneDX",
        spec_version: "1.5",
        serial_number: String::new(),
        version: 1,
        metadata: Metadata {
            tools: Tools {
                components: vec![Component {
                    kind: "application",
                    bom_ref: "xtask".into(),
                    name: "xtask".into(),
                    version: Some(env!("CARGO_PKG_VERSION").into()),
                    description: Some("`cargo xtask layer`, the builder of this layer".into()),
                    ..Component::default()
                }],
            },
            component: Component {
                kind: "application",
                bom_ref: "layer".into(),
                name: layer.name.clone(),
                description: Some(format!(
                    "AWS Lambda layer {} for {}, profile {}",
                    layer.name, layer.arch, layer.profile
                )),
                properties: layer_props,
                ..Component::default()
            },
        },
        components,
    };
    // The serial number is a UUID (version 8, RFC 9562: custom) made of the sha256 of the
    // document without it, so equal content gives equal bytes.
    let unnumbered = serde_json::to_string(&bom).unwrap_or_default();
    bom.serial_number = format!("urn:uuid:{}", uuid_of(unnumbered.as_bytes()));
    serde_json::to_string_pretty(&bom).unwrap_or_default() + "\n"
}

fn dist_component(d: &DistInfo) -> Component<'_> {
    let purl = purl(&d.name, &d.version);
    Component {
        kind: "library",
        bom_ref: purl.clone(),
        name: d.name.clone(),
        version: Some(d.version.clone()),
        purl: Some(purl),
        licenses: d
            .licenses
            .iter()
            .map(|l| match l {
                License::Expression(e) => LicenseChoice::Expression { expression: e },
                License::Name(n) => LicenseChoice::License {
                    license: LicenseName { name: n },
                },
            })
            .collect(),
        hashes: vec![Hash {
            alg: "SHA-256",
            content: d.sha256.clone(),
        }],
        external_references: vec![ExternalReference {
            kind: "distribution",
            url: d.url.clone(),
            comment: format!("the wheel installed: {}", d.wheel),
        }],
        properties: vec![property("wheel", &d.wheel)],
        ..Component::default()
    }
}

fn runtime_component(r: &RuntimePart) -> Component<'static> {
    let mut properties = vec![property("runtime:archive", &r.archive)];
    match (&r.release, &r.not_pinned) {
        (Some(release), None) => {
            properties.push(property("runtime:pinned-download", "true"));
            properties.push(property("runtime:python-build-standalone-release", release));
        }
        (_, why) => {
            properties.push(property("runtime:pinned-download", "false"));
            properties.push(property(
                "runtime:note",
                why.clone()
                    .unwrap_or_else(|| "not the spec's pinned download".into()),
            ));
        }
    }
    let description = match &r.release {
        Some(release) if r.not_pinned.is_none() => {
            format!(
                "CPython {} from python-build-standalone {release}",
                r.version
            )
        }
        _ => format!(
            "CPython {}, NOT the spec's pinned python-build-standalone download (see runtime:note)",
            r.version
        ),
    };
    Component {
        kind: "application",
        bom_ref: "runtime".into(),
        name: "cpython".into(),
        version: Some(r.version.clone()),
        description: Some(description),
        licenses: vec![LicenseChoice::Expression {
            expression: "PSF-2.0",
        }],
        hashes: vec![Hash {
            alg: "SHA-256",
            content: r.sha256.clone(),
        }],
        external_references: r
            .url
            .iter()
            .map(|u| ExternalReference {
                kind: "distribution",
                url: u.clone(),
                comment: format!("the runtime archive: {}", r.archive),
            })
            .collect(),
        properties,
        ..Component::default()
    }
}

/// A version-8 UUID from the sha256 of `bytes`.
fn uuid_of(bytes: &[u8]) -> String {
    let mut b: [u8; 16] = Sha256::digest(bytes)[..16].try_into().unwrap_or_default();
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> (
        LayerInfo,
        RuntimePart,
        Vec<DistInfo>,
        Vec<RemovedDistribution>,
    ) {
        let layer = LayerInfo {
            name: "python-litellm".into(),
            arch: "x86_64".into(),
            profile: "slim".into(),
        };
        let runtime = RuntimePart {
            version: "3.11.16".into(),
            archive: "cpython-fixture-x86_64-install_only.tar.gz".into(),
            sha256: "ab".repeat(32),
            url: None,
            release: None,
            not_pinned: Some("a fixture runtime".into()),
        };
        let dist = |name: &str, version: &str, licenses| DistInfo {
            name: name.into(),
            version: version.into(),
            wheel: format!("{}-{version}-py3-none-any.whl", name.replace('-', "_")),
            url: format!("https://files.example/{name}.whl"),
            sha256: "cd".repeat(32),
            licenses,
        };
        let dists = vec![
            dist("litellm", "1.78.7", vec![License::Name("MIT".into())]),
            dist(
                "Charset_Normalizer",
                "3.5.2+local",
                vec![License::Expression("MIT".into())],
            ),
        ];
        let removed = vec![RemovedDistribution {
            name: "hf-xet".into(),
            version: "1.1.10".into(),
            rule: "hf-xet".into(),
        }];
        (layer, runtime, dists, removed)
    }

    #[test]
    fn a_cyclonedx_1_5_document_with_every_distribution_and_the_runtime() {
        let (layer, runtime, dists, removed) = inputs();
        let text = document(&layer, &runtime, &dists, &removed);
        let bom: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(bom["bomFormat"], "CycloneDX");
        assert_eq!(bom["specVersion"], "1.5");
        assert_eq!(bom["version"], 1);
        assert!(bom.get("metadata").unwrap().get("timestamp").is_none());
        let serial = bom["serialNumber"].as_str().unwrap();
        assert!(
            serial.starts_with("urn:uuid:") && serial.len() == 45,
            "{serial}"
        );
        assert_eq!(bom["metadata"]["component"]["name"], "python-litellm");
        assert!(bom["metadata"]["component"]["properties"]
            .to_string()
            .contains("hf-xet 1.1.10 (rule hf-xet): not in the layer"));
        assert_eq!(bom["metadata"]["tools"]["components"][0]["name"], "xtask");
        let components = bom["components"].as_array().unwrap();
        let names: Vec<&str> = components
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            ["cpython", "Charset_Normalizer", "litellm"],
            "runtime, then by normalized name"
        );
        let litellm = &components[2];
        assert_eq!(litellm["type"], "library");
        assert_eq!(litellm["purl"], "pkg:pypi/litellm@1.78.7");
        assert_eq!(litellm["licenses"][0]["license"]["name"], "MIT");
        assert_eq!(litellm["hashes"][0]["alg"], "SHA-256");
        assert_eq!(litellm["hashes"][0]["content"], "cd".repeat(32));
        assert!(litellm
            .to_string()
            .contains("litellm-1.78.7-py3-none-any.whl"));
        let charset = &components[1];
        assert_eq!(charset["purl"], "pkg:pypi/charset-normalizer@3.5.2%2Blocal");
        assert_eq!(charset["licenses"][0]["expression"], "MIT");
        let cpython = &components[0];
        assert_eq!(cpython["version"], "3.11.16");
        assert!(
            cpython.to_string().contains("\"value\":\"false\""),
            "{cpython}"
        );
        assert!(cpython["description"]
            .as_str()
            .unwrap()
            .contains("NOT the spec's pinned"));
        // Same inputs, same bytes; other content, another serial number.
        assert_eq!(text, document(&layer, &runtime, &dists, &removed));
        let other = document(&layer, &runtime, &dists[..1], &removed);
        let other: serde_json::Value = serde_json::from_str(&other).unwrap();
        assert_ne!(other["serialNumber"], bom["serialNumber"]);
    }

    #[test]
    fn a_pinned_runtime_names_its_release() {
        let (layer, mut runtime, dists, _) = inputs();
        runtime.release = Some("20260814".into());
        runtime.not_pinned = None;
        runtime.url = Some("https://github.com/x/cpython.tar.gz".into());
        let bom: serde_json::Value =
            serde_json::from_str(&document(&layer, &runtime, &dists, &[])).unwrap();
        let cpython = &bom["components"][0];
        assert_eq!(
            cpython["description"],
            "CPython 3.11.16 from python-build-standalone 20260814"
        );
        assert_eq!(
            cpython["externalReferences"][0]["url"],
            "https://github.com/x/cpython.tar.gz"
        );
        assert!(!cpython.to_string().contains("runtime:note"));
    }
}
