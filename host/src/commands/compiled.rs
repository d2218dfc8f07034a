//! C, C++ and AssemblyScript swarm projects: the language's compiler makes
//! a WebAssembly core module, and the `chassis` binary makes it a
//! component in-process, with nothing downloaded but the pinned compiler.
//!
//! - C and C++: `wit-bindgen-c` (linked into the binary) writes the WIT
//!   world's C bindings into the project's generated `chassis/` (`chassis.h`,
//!   `chassis.c` and `chassis_component_type.o`, the object that carries the
//!   world into the link), beside the SDK's helpers (`chassis_swarm.h`,
//!   `chassis_swarm.c`). zig's clang (PyPI `ziglang`, with wasi-libc and
//!   libc++) compiles each source for WASI preview 1 as a reactor and links
//!   them; `wit-component` then wraps the module with the preview-1 *proxy*
//!   adapter of the host's own wasmtime (`wasi-preview1-component-adapter-provider`),
//!   which maps stdio to `wasi:cli` streams and needs no filesystem or clock
//!   import (the contract still decides what is granted).
//! - AssemblyScript: `asc` (npm `assemblyscript`) compiles the SDK's
//!   canonical-ABI glue (`chassis/abi.ts`, written once for the chassis
//!   worlds) with the project's entry; the exports are renamed to the
//!   component model's names, the world is embedded with UTF-16 strings
//!   (AssemblyScript's own), and `wit-component` makes the component (no
//!   WASI at all).
//!
//! An import the module needs that is neither the world's nor WASI's (a C
//! function declared and never defined, `Math.random` in AssemblyScript) is
//! refused before componentizing, naming it. With `--optimize` (or
//! `optimize = true` in the project file) Binaryen's `wasm-opt` runs over the
//! core module first (`optimize.rs`).

use std::process::Command;

use wit_bindgen_core::wit_parser::Resolve;

use super::project::Lang;
use super::script::{
    GENERATED, Script, WIT, check_world, project_files, run_tool as run, write_if_changed,
};
use super::tools;
use super::*;

/// The C SDK: the helper header and its implementation.
const C_HELPERS: &[(&str, &str)] = &[
    (
        "chassis_swarm.h",
        include_str!("../../../guest-sdk/c/chassis_swarm.h"),
    ),
    (
        "chassis_swarm.c",
        include_str!("../../../guest-sdk/c/chassis_swarm.c"),
    ),
];

/// The AssemblyScript SDK: the canonical-ABI glue and the helpers.
const AS_HELPERS: &[(&str, &str, bool)] = &[
    (
        "abi.ts",
        include_str!("../../../guest-sdk/assemblyscript/abi.ts"),
        false,
    ),
    (
        "swarm.ts",
        include_str!("../../../guest-sdk/assemblyscript/swarm.ts"),
        false,
    ),
    (
        "json.ts",
        include_str!("../../../guest-sdk/assemblyscript/json.ts"),
        false,
    ),
    (
        "credentials.ts",
        include_str!("../../../guest-sdk/assemblyscript/credentials.ts"),
        false,
    ),
    (
        "http.ts",
        include_str!("../../../guest-sdk/assemblyscript/http.ts"),
        false,
    ),
    (
        "storage.ts",
        include_str!("../../../guest-sdk/assemblyscript/storage.ts"),
        true,
    ),
];

/// Stack of a C or C++ swarm (zig's default is 16 MiB, every task's
/// instance would reserve it): 1 MiB, as Rust's.
const STACK_BYTES: u32 = 1024 * 1024;

/// The flags every C and C++ build uses. zig builds wasi-libc (and libc++)
/// once per set of link flags, so these do not change with the project.
const TARGET: &[&str] = &["--target=wasm32-wasi", "-O2", "-mexec-model=reactor"];

/// The WIT world `world` of the chassis package, resolved.
fn resolve(world: &str) -> Result<(Resolve, wit_bindgen_core::wit_parser::WorldId)> {
    let mut resolve = Resolve::default();
    let package = resolve
        .push_str("chassis.wit", WIT)
        .context("parsing the WIT package the binary carries")?;
    let world = resolve
        .select_world(&[package], Some(world))
        .with_context(|| format!("world {world}"))?;
    Ok((resolve, world))
}

/// Write the C bindings of `world` into the project's `chassis/`.
fn c_bindings(dir: &Path, world: &str) -> Result<()> {
    let (mut resolve, world) = resolve(world)?;
    let opts = wit_bindgen_c::Opts {
        rename_world: Some("chassis".to_string()),
        ..Default::default()
    };
    let mut files = wit_bindgen_core::Files::default();
    opts.build()
        .generate(&mut resolve, world, &mut files)
        .context("generating the C bindings")?;
    for (name, bytes) in files.iter() {
        let path = dir.join(GENERATED).join(name);
        if std::fs::read(&path).is_ok_and(|old| old == bytes) {
            continue;
        }
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// The source extensions of a C or C++ project: (C sources, C++ sources).
fn c_sources(lang: Lang) -> (&'static [&'static str], &'static [&'static str]) {
    match lang {
        Lang::Cpp => (&["c"], &["cpp", "cc", "cxx"]),
        _ => (&["c"], &[]),
    }
}

/// Write the generated directory of a C, C++ or AssemblyScript project.
pub(crate) fn write_generated(dir: &Path, lang: Lang, world: &str, storage: bool) -> Result<()> {
    let generated = dir.join(GENERATED);
    write_if_changed(&generated.join("wit/chassis.wit"), WIT)?;
    match lang {
        Lang::C | Lang::Cpp => {
            for (name, text) in C_HELPERS {
                write_if_changed(&generated.join(name), text)?;
            }
            c_bindings(dir, world)?;
        }
        _ => {
            for (name, text, needs_storage) in AS_HELPERS {
                let path = generated.join(name);
                if *needs_storage && !storage {
                    match std::fs::remove_file(&path) {
                        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                            return Err(e).with_context(|| format!("removing {}", path.display()));
                        }
                        _ => {}
                    }
                } else {
                    write_if_changed(&path, text)?;
                }
            }
        }
    }
    write_if_changed(
        &generated.join("README.md"),
        "Written by `chassis build` from the SDK the `chassis` binary carries: \
         the WIT package, the bindings generated from it and the helpers. \
         Edits are written over; keep this directory out of version control.\n",
    )
}

/// zig, with its caches in the tool's own directory (not the project's).
fn zig(mode: &str) -> Result<Command> {
    let program = tools::ZIGLANG.ensure()?;
    let cache = tools::ZIGLANG.cache_dir()?;
    let first = !cache.join("o").exists();
    if first {
        eprintln!(
            "the first C or C++ build compiles wasi-libc into {} (about 30 s per library, once)",
            cache.display()
        );
    }
    let mut cmd = Command::new(program);
    cmd.arg(mode)
        .env("ZIG_GLOBAL_CACHE_DIR", &cache)
        .env("ZIG_LOCAL_CACHE_DIR", &cache);
    Ok(cmd)
}

/// Build a C or C++ project's core module at `core` (relative to `dir`).
fn build_c(dir: &Path, lang: Lang, script: &Script, core: &Path) -> Result<()> {
    let (c_exts, cpp_exts) = c_sources(lang);
    let ext_of = |p: &Path| {
        p.extension()
            .map(|e| e.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let mut sources: Vec<PathBuf> = project_files(dir)
        .into_iter()
        .filter_map(|f| f.strip_prefix(dir).ok().map(Path::to_path_buf))
        .filter(|f| {
            let ext = ext_of(f);
            c_exts.contains(&ext.as_str()) || cpp_exts.contains(&ext.as_str())
        })
        .collect();
    if sources.is_empty() {
        bail!(
            "{}: no {} sources (files ending in {}) outside chassis/ and target/",
            dir.display(),
            lang.name(),
            c_exts
                .iter()
                .chain(cpp_exts)
                .map(|e| format!(".{e}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    sources.push(Path::new(GENERATED).join("chassis.c"));
    sources.push(Path::new(GENERATED).join("chassis_swarm.c"));
    let objects_dir = Path::new("target").join("obj");
    std::fs::create_dir_all(dir.join(&objects_dir))
        .with_context(|| format!("making {}", dir.join(&objects_dir).display()))?;
    let mut objects = Vec::new();
    for (i, source) in sources.iter().enumerate() {
        let cpp = cpp_exts.contains(&ext_of(source).as_str());
        // Numbered, so that `a/b.c` and `a_b.c` never share an object.
        let object = objects_dir.join(format!(
            "{i}-{}.o",
            source.file_name().unwrap_or_default().to_string_lossy()
        ));
        let mut cmd = zig(if cpp { "c++" } else { "cc" })?;
        cmd.args(TARGET)
            .arg(if cpp { "-std=c++17" } else { "-std=c17" });
        if cpp {
            cmd.args(["-fno-exceptions", "-fno-rtti"]);
        }
        cmd.args(["-I", GENERATED, "-I", "."])
            .args(&script.flags)
            .arg("-c")
            .arg(source)
            .arg("-o")
            .arg(&object);
        run(cmd, dir, &format!("compiling {}", source.display()))?;
        objects.push(object);
    }
    let mut cmd = zig(if lang == Lang::Cpp { "c++" } else { "cc" })?;
    cmd.args(TARGET).arg("-s");
    if lang == Lang::Cpp {
        cmd.args(["-fno-exceptions", "-fno-rtti"]);
    }
    cmd.arg(format!("-Wl,-z,stack-size={STACK_BYTES}"))
        .args(&objects)
        .arg(Path::new(GENERATED).join("chassis_component_type.o"))
        .arg("-o")
        .arg(core);
    run(cmd, dir, "linking")
}

/// Build an AssemblyScript project's core module at `core`, its exports
/// renamed and the world embedded.
fn build_assemblyscript(dir: &Path, script: &Script, core: &Path) -> Result<()> {
    let asc = tools::ASSEMBLYSCRIPT.ensure()?;
    // The entry the compiler sees: the SDK's exports, then the project's
    // module, whose top-level code registers its tasks.
    let entry = Path::new(GENERATED).join("main.ts");
    let module = Path::new(&script.entry).with_extension("");
    write_if_changed(
        &dir.join(&entry),
        &format!(
            "// Written by `chassis build`: the swarm's module, then the exports the\n\
             // component model calls.\n\
             import \"../{}\";\n\
             export {{ describe, execute, cabi_realloc, cabi_post_execute }} from \"./abi\";\n",
            module.to_string_lossy().replace('\\', "/")
        ),
    )?;
    let mut cmd = tools::node()?;
    cmd.arg(asc)
        .arg(&entry)
        .args([
            "-O3",
            "--noAssert",
            "--runtime",
            "incremental",
            "--use",
            "abort=chassis/abi/chassisAbort",
            "--exportStart",
            "_initialize",
            "-o",
        ])
        .arg(core);
    run(cmd, dir, "asc")?;
    let path = dir.join(core);
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut renamed = rename_exports(&bytes)?;
    let (resolve, world) = resolve(&script.world)?;
    wit_component::embed_component_metadata(
        &mut renamed,
        &resolve,
        world,
        wit_component::StringEncoding::UTF16,
    )
    .context("embedding the world")?;
    std::fs::write(&path, renamed).with_context(|| format!("writing {}", path.display()))
}

/// The task interface's name in the component model.
const TASK: &str = "infrafabric:chassis/task@0.1.0";

/// AssemblyScript's export names (plain identifiers) renamed to the
/// component model's; the module's other exports are kept as they are.
pub(crate) fn rename_exports(core: &[u8]) -> Result<Vec<u8>> {
    use wasm_encoder::{ExportKind, ExportSection, Module, RawSection};
    use wasmparser::{ExternalKind, Parser, Payload};
    let mut module = Module::new();
    for payload in Parser::new(0).parse_all(core) {
        let payload = payload.context("reading the compiled module")?;
        match payload {
            Payload::Version { .. } | Payload::End(_) => {}
            Payload::ExportSection(reader) => {
                let mut exports = ExportSection::new();
                for export in reader {
                    let export = export.context("reading the module's exports")?;
                    let name = match export.name {
                        "describe" | "execute" => format!("{TASK}#{}", export.name),
                        "cabi_post_execute" => format!("cabi_post_{TASK}#execute"),
                        other => other.to_string(),
                    };
                    let kind = match export.kind {
                        ExternalKind::Func | ExternalKind::FuncExact => ExportKind::Func,
                        ExternalKind::Table => ExportKind::Table,
                        ExternalKind::Memory => ExportKind::Memory,
                        ExternalKind::Global => ExportKind::Global,
                        ExternalKind::Tag => ExportKind::Tag,
                    };
                    exports.export(&name, kind, export.index);
                }
                module.section(&exports);
            }
            other => {
                if let Some((id, range)) = other.as_section() {
                    module.section(&RawSection {
                        id,
                        data: &core[range],
                    });
                }
            }
        }
    }
    Ok(module.finish())
}

/// What a core module imports that is neither the chassis world's nor
/// WASI preview 1's, said as what the author wrote.
fn foreign_imports(core: &[u8], lang: Lang) -> Result<()> {
    use wasmparser::{Parser, Payload, TypeRef};
    let mut foreign = Vec::new();
    for payload in Parser::new(0).parse_all(core) {
        if let Payload::ImportSection(reader) = payload.context("reading the compiled module")? {
            for import in reader.into_imports() {
                let import = import.context("reading the module's imports")?;
                if import.module.starts_with("infrafabric:chassis/")
                    || (import.module == "wasi_snapshot_preview1"
                        && matches!(import.ty, TypeRef::Func(_) | TypeRef::FuncExact(_)))
                {
                    continue;
                }
                foreign.push(format!(
                    "{}.{}",
                    crate::text::escape(import.module, 80),
                    crate::text::escape(import.name, 80)
                ));
            }
        }
    }
    if foreign.is_empty() {
        return Ok(());
    }
    let hint = match lang {
        Lang::Assemblyscript => {
            "AssemblyScript makes `env` imports for Math.random (env.seed), Date.now, trace and \
             console.log, which a swarm has no host for: use the SDK's `log` and the payload instead"
        }
        _ => {
            "a function given `import_module` / `import_name` attributes becomes an import the \
             host cannot give: use the WIT's bindings in chassis/chassis.h instead"
        }
    };
    bail!(
        "the module imports what the world does not have: {} ({hint})",
        foreign.join(", ")
    )
}

/// Build a C, C++ or AssemblyScript project into the component `out`
/// (relative to `dir`).
pub(crate) fn build(
    dir: &Path,
    name: &str,
    lang: Lang,
    script: &Script,
    out: &Path,
    optimize: bool,
) -> Result<()> {
    let manifest = match lang {
        Lang::Assemblyscript => "package.json",
        _ => "chassis.toml",
    };
    let storage = check_world(&script.world, &dir.join(manifest))?;
    write_generated(dir, lang, &script.world, storage)?;
    let target = dir.join("target");
    std::fs::create_dir_all(&target).with_context(|| format!("making {}", target.display()))?;
    let core = Path::new("target").join(format!("{name}.core.wasm"));
    match lang {
        Lang::Assemblyscript => {
            eprintln!(
                "building {name} (AssemblyScript {}, world {})",
                tools::ASSEMBLYSCRIPT.version,
                script.world
            );
            build_assemblyscript(dir, script, &core)?;
        }
        _ => {
            eprintln!(
                "building {name} ({} with zig {} cc, world {})",
                lang.name(),
                tools::ZIGLANG.version,
                script.world
            );
            build_c(dir, lang, script, &core)?;
        }
    }
    let core_path = dir.join(&core);
    let mut module =
        std::fs::read(&core_path).with_context(|| format!("reading {}", core_path.display()))?;
    foreign_imports(&module, lang)?;
    if optimize {
        let before = module.len();
        module = super::optimize::core_module(&module, &format!("the {} module", lang.name()))?;
        eprintln!(
            "optimized the module (wasm-opt {}, binaryen {}): {before} -> {} bytes",
            super::optimize::LEVEL,
            tools::BINARYEN.version,
            module.len()
        );
    }
    let component = componentize(&module)
        .with_context(|| format!("making a component of {}", core_path.display()))?;
    let out_path = dir.join(out);
    let partial = out_path.with_extension("wasm.partial");
    std::fs::write(&partial, &component)
        .with_context(|| format!("writing {}", partial.display()))?;
    std::fs::rename(&partial, &out_path).with_context(|| format!("writing {}", out_path.display()))
}

/// A core module that carries its world becomes a component; its WASI
/// preview-1 imports (if any) go through the proxy adapter.
pub(crate) fn componentize(module: &[u8]) -> Result<Vec<u8>> {
    use wasi_preview1_component_adapter_provider::{
        WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, WASI_SNAPSHOT_PREVIEW1_PROXY_ADAPTER,
    };
    wit_component::ComponentEncoder::default()
        .validate(true)
        .module(module)?
        .adapter(
            WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
            WASI_SNAPSHOT_PREVIEW1_PROXY_ADAPTER,
        )?
        .encode()
}

/// The extensions of the files that go into a component of `lang`.
pub(crate) fn source_extensions(lang: Lang) -> &'static [&'static str] {
    match lang {
        Lang::C => &["c", "h", "chassis.toml"],
        Lang::Cpp => &[
            "c",
            "h",
            "cpp",
            "cc",
            "cxx",
            "hpp",
            "hh",
            "hxx",
            "chassis.toml",
        ],
        _ => &["ts", "package.json", "asconfig.json"],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assemblyscript_exports_get_the_component_model_names() {
        let core = wat::parse_str(
            r#"(module
                (memory (export "memory") 1)
                (func (export "describe") (result i32) i32.const 0)
                (func (export "execute") (param i32 i32 i32 i32 i32 i32) (result i32) i32.const 0)
                (func (export "cabi_post_execute") (param i32))
                (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32) i32.const 0)
                (func (export "_initialize")))"#,
        )
        .unwrap();
        let renamed = rename_exports(&core).unwrap();
        wasmparser::Validator::new().validate_all(&renamed).unwrap();
        let names: Vec<String> = wasmparser::Parser::new(0)
            .parse_all(&renamed)
            .filter_map(|p| match p.unwrap() {
                wasmparser::Payload::ExportSection(r) => Some(
                    r.into_iter()
                        .map(|e| e.unwrap().name.to_string())
                        .collect::<Vec<_>>(),
                ),
                _ => None,
            })
            .flatten()
            .collect();
        assert_eq!(
            names,
            [
                "memory",
                "infrafabric:chassis/task@0.1.0#describe",
                "infrafabric:chassis/task@0.1.0#execute",
                "cabi_post_infrafabric:chassis/task@0.1.0#execute",
                "cabi_realloc",
                "_initialize",
            ]
        );
    }

    #[test]
    fn an_import_from_outside_the_world_is_named() {
        let core = wat::parse_str(
            r#"(module
                (import "infrafabric:chassis/log@0.1.0" "log" (func (param i32 i32 i32)))
                (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
                (import "env" "seed" (func (result f64))))"#,
        )
        .unwrap();
        let err = foreign_imports(&core, Lang::Assemblyscript).unwrap_err();
        let text = format!("{err}");
        assert!(text.contains("env.seed"), "{text}");
        assert!(!text.contains("fd_write"), "{text}");
        assert!(text.contains("Math.random"), "{text}");
        let core = wat::parse_str(r#"(module (import "env" "helper" (func)))"#).unwrap();
        let text = format!("{}", foreign_imports(&core, Lang::C).unwrap_err());
        assert!(
            text.contains("env.helper") && text.contains("chassis.h"),
            "{text}"
        );
    }

    #[test]
    fn c_bindings_are_generated_for_every_world() {
        let dir = std::env::temp_dir().join(format!("chassis-c-bindings-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for world in [
            "logging-swarm",
            "credentialed-swarm",
            "storing-swarm",
            "swarm",
        ] {
            write_generated(&dir, Lang::C, world, true).unwrap();
            let header = std::fs::read_to_string(dir.join("chassis/chassis.h")).unwrap();
            assert!(
                header.contains("exports_infrafabric_chassis_task_execute"),
                "{world}"
            );
            assert_eq!(
                header.contains("infrafabric_chassis_storage_get"),
                world.contains("stor") || world == "swarm",
                "{world}"
            );
            let object = std::fs::read(dir.join("chassis/chassis_component_type.o")).unwrap();
            assert!(object.starts_with(b"\0asm"));
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
