//! `chassis build --optimize` (or `optimize = true` in the project file),
//! and `chassis optimize COMPONENT` for a component built anywhere:
//! Binaryen's `wasm-opt` (npm `binaryen`, pinned, run by node) over each
//! core module. Binaryen reads core modules only, so a component is taken
//! apart: every core module in it (nested components included) is
//! optimized on its own and put back in its place, the rest of the
//! component byte for byte. The features are named one by one (those
//! the host's wasmtime runs), never `--all-features`, so an optimization
//! cannot bring in a proposal the host does not enable; the result is
//! validated before it replaces anything.

use std::process::Stdio;

use super::tools;
use super::*;

/// `chassis optimize`'s arguments.
#[derive(clap::Args)]
pub struct OptimizeCommand {
    /// The component.
    component: PathBuf,

    /// Where the optimized component goes (default: beside it, as
    /// NAME.opt.wasm).
    #[arg(short, long, value_name = "FILE")]
    out: Option<PathBuf>,
}

impl OptimizeCommand {
    /// Optimize, validate, write.
    pub async fn execute(self) -> Result<()> {
        let out = self
            .out
            .clone()
            .unwrap_or_else(|| self.component.with_extension("opt.wasm"));
        component_file(&self.component, &out)?;
        out_line(&out)
    }
}

fn out_line(out: &Path) -> Result<()> {
    super::out(out.display())
}

/// The optimization level: `-Os` (size, with speed kept), as the measured
/// table in `docs/performance.md` chose.
pub(crate) const LEVEL: &str = "-Os";

/// The features wasm-opt may use: what the compilers emit and wasmtime 48
/// runs by default.
const FEATURES: &[&str] = &[
    "--enable-bulk-memory",
    "--enable-bulk-memory-opt",
    "--enable-nontrapping-float-to-int",
    "--enable-sign-ext",
    "--enable-mutable-globals",
    "--enable-multivalue",
    "--enable-reference-types",
    "--enable-extended-const",
    "--enable-call-indirect-overlong",
    "--enable-simd",
];

/// One core module (`what`, in messages) through wasm-opt; the optimized
/// module, validated.
pub(crate) fn core_module(module: &[u8], what: &str) -> Result<Vec<u8>> {
    let wasm_opt = tools::BINARYEN.ensure()?;
    let scratch = tempdir()?;
    let input = scratch.join("in.wasm");
    let output = scratch.join("out.wasm");
    std::fs::write(&input, module).with_context(|| format!("writing {}", input.display()))?;
    let mut cmd = tools::node()?;
    cmd.arg(wasm_opt)
        .arg(LEVEL)
        .args(FEATURES)
        .arg(&input)
        .arg("-o")
        .arg(&output)
        .stdin(Stdio::null())
        .stdout(Stdio::from(std::io::stderr()));
    let status = cmd.status().context("running wasm-opt")?;
    let result = if status.success() {
        std::fs::read(&output).with_context(|| format!("reading {}", output.display()))
    } else {
        Err(anyhow::anyhow!(
            "wasm-opt failed ({status}) on {what}: its messages are above"
        ))
    };
    let _ = std::fs::remove_dir_all(&scratch);
    let optimized = result?;
    wasmparser::Validator::new()
        .validate_all(&optimized)
        .context("wasm-opt made a module that does not validate")?;
    Ok(optimized)
}

/// A scratch directory of this process's own.
fn tempdir() -> Result<PathBuf> {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "chassis-optimize-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("making {}", dir.display()))?;
    Ok(dir)
}

/// `component` with every core module in it passed through `f`, in place.
pub(crate) fn map_core_modules(
    component: &[u8],
    f: &mut dyn FnMut(&[u8]) -> Result<Vec<u8>>,
) -> Result<Vec<u8>> {
    use wasm_encoder::RawSection;
    use wasmparser::{Chunk, Parser, Payload};
    let mut parser = Parser::new(0);
    let mut at = 0;
    let mut out = wasm_encoder::Component::new();
    loop {
        let (payload, consumed) = match parser
            .parse(&component[at..], true)
            .context("reading the component")?
        {
            Chunk::NeedMoreData(_) => bail!("the component is truncated"),
            Chunk::Parsed { consumed, payload } => (payload, consumed),
        };
        match payload {
            Payload::Version { encoding, .. } => {
                if encoding != wasmparser::Encoding::Component {
                    bail!("not a component");
                }
            }
            Payload::ModuleSection {
                unchecked_range, ..
            } => {
                let range = unchecked_range.clone();
                let module = component.get(range.clone()).context("truncated module")?;
                out.section(&RawSection {
                    id: wasm_encoder::ComponentSectionId::CoreModule as u8,
                    data: &f(module)?,
                });
                at = range.end;
                continue;
            }
            Payload::ComponentSection {
                unchecked_range, ..
            } => {
                let range = unchecked_range.clone();
                let nested = component
                    .get(range.clone())
                    .context("truncated component")?;
                out.section(&RawSection {
                    id: wasm_encoder::ComponentSectionId::Component as u8,
                    data: &map_core_modules(nested, f)?,
                });
                at = range.end;
                continue;
            }
            Payload::End(_) => break,
            other => {
                if let Some((id, range)) = other.as_section() {
                    out.section(&RawSection {
                        id,
                        data: &component[range],
                    });
                }
            }
        }
        at += consumed;
    }
    Ok(out.finish())
}

/// A component with each core module through wasm-opt (installed on first
/// use), validated: what `chassis optimize` writes, for embedders and the
/// bench.
pub fn optimize_component(component: &[u8]) -> Result<Vec<u8>> {
    let optimized = map_core_modules(component, &mut |m| {
        core_module(m, "a core module of the component")
    })?;
    wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all())
        .validate_all(&optimized)
        .context("the optimized component does not validate")?;
    Ok(optimized)
}

/// Optimize the component file `input` into `output` (the same path is
/// fine): each core module through wasm-opt; the result validated as a
/// component, and sizes said.
pub(crate) fn component_file(input: &Path, output: &Path) -> Result<()> {
    let bytes = std::fs::read(input).with_context(|| format!("reading {}", input.display()))?;
    eprintln!(
        "optimizing {} (wasm-opt {} from binaryen {})",
        input.display(),
        LEVEL,
        tools::BINARYEN.version
    );
    let optimized =
        optimize_component(&bytes).with_context(|| format!("optimizing {}", input.display()))?;
    eprintln!("optimized: {} -> {} bytes", bytes.len(), optimized.len());
    let partial = output.with_extension("wasm.partial");
    std::fs::write(&partial, &optimized)
        .with_context(|| format!("writing {}", partial.display()))?;
    std::fs::rename(&partial, output).with_context(|| format!("writing {}", output.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_modules_are_replaced_in_place_and_the_rest_kept() {
        let component = wat::parse_str(
            r#"(component
                (core module $a (func (export "f") (result i32) i32.const 1))
                (component $inner
                    (core module $b (func (export "g") (result i32) i32.const 2)))
                (core instance (instantiate $a)))"#,
        )
        .unwrap();
        let mut seen = 0;
        let mapped = map_core_modules(&component, &mut |m| {
            seen += 1;
            // Replace each module with one exporting a different name.
            let text = wasmprinter_free_rename(m);
            Ok(text)
        })
        .unwrap();
        assert_eq!(seen, 2);
        wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all())
            .validate_all(&mapped)
            .unwrap();
        // The identity keeps the component byte for byte.
        let same = map_core_modules(&component, &mut |m| Ok(m.to_vec())).unwrap();
        assert_eq!(same, component);
        assert_ne!(mapped, component);
    }

    /// A module like `m` with one more (empty) custom section.
    fn wasmprinter_free_rename(m: &[u8]) -> Vec<u8> {
        let mut out = m.to_vec();
        let custom = wasm_encoder::CustomSection {
            name: "x".into(),
            data: b"y".as_slice().into(),
        };
        use wasm_encoder::Encode;
        out.push(0);
        let mut body = Vec::new();
        custom.encode(&mut body);
        // `encode` wrote the section's size and contents.
        out.extend_from_slice(&body);
        out
    }
}
