#!/usr/bin/env node
// Builds native/build/llm2clip_embd.node (run by `npm install`; `--force` rebuilds).
//
// Offline and fast (~3 s): one C++ file compiled with the system compiler against
//  * node-llama-cpp's own addon headers (llama/addon/*.h) — the layout we unwrap,
//  * node-addon-api from node-llama-cpp's dependency tree (the copy its addon uses),
//  * Node-API C headers (node-api-headers, else the running node's include/node),
//  * llama.h + ggml headers taken at build time from the llama.cpp source
//    node-llama-cpp ships (llama/gitRelease.bundle), cached under native/build/.
// No libllama is linked: the addon resolves it at runtime from the loaded binding.
// Env: LLM2CLIP_SKIP_NATIVE=1 skips the build; CXX picks the compiler.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

// The only version whose AddonContext/AddonModel layout and JS internals were verified.
export const SUPPORTED_NODE_LLAMA_CPP = '3.21.1';

const nativeDir = path.dirname(fileURLToPath(import.meta.url));
const root = path.dirname(nativeDir);
const buildDir = path.join(nativeDir, 'build');
const source = path.join(nativeDir, 'llm2clip_embd.cpp');
const sources = [source, path.join(nativeDir, 'nlc_binding.h')]; // what the stamp hashes
const output = path.join(buildDir, 'llm2clip_embd.node');
const tmpOutput = path.join(buildDir, 'llm2clip_embd.tmp.node'); // .node: require() loads it as an addon
const stampFile = path.join(buildDir, 'llm2clip_embd.stamp.json');
const force = process.argv.includes('--force');
const log = (msg) => console.log(`llm2clip native: ${msg}`);

function fail(msg) {
  console.error(`llm2clip native build: ${msg}`);
  process.exit(1);
}

function run(cmd, args, opts = {}) {
  // keep git from following a GIT_DIR set by a hook or by npm's environment
  const env = { ...process.env };
  for (const k of ['GIT_DIR', 'GIT_WORK_TREE', 'GIT_INDEX_FILE']) delete env[k];
  const r = spawnSync(cmd, args, { encoding: 'utf8', env, maxBuffer: 64 << 20, ...opts });
  if (r.error) fail(`cannot run ${cmd}: ${r.error.message}`);
  if (r.status !== 0) fail(`${cmd} ${args.join(' ')} failed (${r.status}):\n${r.stderr ?? ''}`);
  return { stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

function packageDirOf(resolvedFile, name) {
  for (let d = path.dirname(resolvedFile); d !== path.dirname(d); d = path.dirname(d)) {
    const pj = path.join(d, 'package.json');
    if (fs.existsSync(pj) && JSON.parse(fs.readFileSync(pj, 'utf8')).name === name) return d;
  }
  fail(`cannot find the package directory of ${name} from ${resolvedFile}`);
}

function readVersion(dir) {
  return JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')).version;
}

// llama.h and ggml/include/*.h at the bundle's commit, extracted once into native/build.
function llamaHeaders(bundle) {
  const commit = run('git', ['bundle', 'list-heads', bundle]).stdout.trim().split(/\s+/)[0];
  if (!/^[0-9a-f]{40}$/.test(commit ?? '')) fail(`unexpected bundle heads in ${bundle}`);
  const dir = path.join(buildDir, `llama.cpp-${commit.slice(0, 12)}`);
  if (!fs.existsSync(path.join(dir, 'include', 'llama.h'))) {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'llm2clip-llama-'));
    try {
      const repo = path.join(tmp, 'llama.cpp.git');
      run('git', ['clone', '--bare', '--quiet', bundle, repo]);
      const tar = path.join(tmp, 'headers.tar');
      run('git', [`--git-dir=${repo}`, 'archive', '--format=tar', '-o', tar, commit, 'include', 'ggml/include']);
      const partial = `${dir}.partial`;
      fs.rmSync(partial, { recursive: true, force: true });
      fs.mkdirSync(partial, { recursive: true });
      run('tar', ['-xf', tar, '-C', partial]);
      fs.rmSync(dir, { recursive: true, force: true });
      fs.renameSync(partial, dir);
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  }
  return { commit, dir };
}

function nodeApiIncludeDir(requireFromNlc) {
  try {
    const cmakeJs = packageDirOf(requireFromNlc.resolve('cmake-js'), 'cmake-js');
    const headers = createRequire(path.join(cmakeJs, 'package.json'))('node-api-headers');
    if (fs.existsSync(path.join(headers.include_dir, 'node_api.h'))) return headers.include_dir;
  } catch {
    // fall through to the running node's own headers
  }
  const own = path.resolve(path.dirname(process.execPath), '..', 'include', 'node');
  if (fs.existsSync(path.join(own, 'node_api.h'))) return own;
  fail('no Node-API headers found (neither node-api-headers nor <node>/include/node)');
}

function main() {
  const t0 = performance.now();
  if (process.env.LLM2CLIP_SKIP_NATIVE === '1') return log('skipped (LLM2CLIP_SKIP_NATIVE=1)');
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    // The layout pins were verified on linux-x64 only; the loader reports this clearly.
    return log(`image injection is not built on ${process.platform}-${process.arch} (linux-x64 only)`);
  }
  const requireFromRoot = createRequire(path.join(root, 'package.json'));
  let nlcDir;
  try {
    nlcDir = packageDirOf(requireFromRoot.resolve('node-llama-cpp'), 'node-llama-cpp');
  } catch {
    fail('node-llama-cpp is not installed');
  }
  const nlcVersion = readVersion(nlcDir);
  if (nlcVersion !== SUPPORTED_NODE_LLAMA_CPP)
    fail(`node-llama-cpp ${nlcVersion} is installed, but the addon's memory-layout assumptions were ` +
      `verified for ${SUPPORTED_NODE_LLAMA_CPP} only; install node-llama-cpp@${SUPPORTED_NODE_LLAMA_CPP}`);
  const requireFromNlc = createRequire(path.join(nlcDir, 'package.json'));
  const napiDir = packageDirOf(requireFromNlc.resolve('node-addon-api'), 'node-addon-api');
  const napiVersion = readVersion(napiDir);
  const nodeApiDir = nodeApiIncludeDir(requireFromNlc);
  const addonHeaders = path.join(nlcDir, 'llama', 'addon');
  const bundle = path.join(nlcDir, 'llama', 'gitRelease.bundle');
  if (!fs.existsSync(path.join(addonHeaders, 'AddonContext.h')) || !fs.existsSync(bundle))
    fail(`node-llama-cpp at ${nlcDir} lacks llama/addon headers or llama/gitRelease.bundle`);

  fs.mkdirSync(buildDir, { recursive: true });
  const tHeaders = performance.now();
  const { commit, dir: llamaDir } = llamaHeaders(bundle);
  const headersMs = performance.now() - tHeaders;

  const cxx = process.env.CXX || 'c++';
  const args = [
    '-std=c++17', '-O2', '-fPIC', '-shared', '-fexceptions', '-fvisibility=hidden', '-pthread',
    '-Wall', '-Wextra', '-Wno-unused-parameter',
    // NAPI_VERSION must match node-llama-cpp's build (it shapes node-addon-api's ObjectWrap)
    '-DNAPI_VERSION=7',
    `-DLLM2CLIP_NLC_VERSION="${nlcVersion}"`, `-DLLM2CLIP_LLAMA_COMMIT="${commit}"`,
    '-isystem', nodeApiDir, '-isystem', napiDir, '-isystem', addonHeaders,
    '-isystem', path.join(llamaDir, 'include'), '-isystem', path.join(llamaDir, 'ggml', 'include'),
    source, '-o', tmpOutput, '-ldl',
  ];
  const stamp = createHash('sha256')
    .update(JSON.stringify({ cxx, args, napiVersion, src: sources.map((f) => fs.readFileSync(f, 'utf8')) }))
    .digest('hex');
  if (!force && fs.existsSync(output) && fs.existsSync(stampFile) &&
      JSON.parse(fs.readFileSync(stampFile, 'utf8')).stamp === stamp)
    return log(`up to date (${path.relative(root, output)})`);

  const tCompile = performance.now();
  process.stderr.write(run(cxx, args).stderr); // warnings, if any
  const compileMs = performance.now() - tCompile;
  // Loading it here catches unresolved symbols now rather than at first use.
  const info = createRequire(import.meta.url)(tmpOutput).info();
  if (info.nodeLlamaCppVersion !== nlcVersion) fail('built addon reports a different node-llama-cpp version');
  fs.renameSync(tmpOutput, output);
  fs.writeFileSync(stampFile, JSON.stringify({ stamp, nlcVersion, napiVersion, commit, cxx }, null, 2) + '\n');
  const s = (ms) => (ms / 1000).toFixed(1);
  log(`built ${path.relative(root, output)} in ${s(performance.now() - t0)} s ` +
    `(headers ${s(headersMs)} s, compile ${s(compileMs)} s; node-llama-cpp ${nlcVersion}, ` +
    `node-addon-api ${napiVersion} from ${path.relative(root, napiDir)}, llama.cpp ${commit.slice(0, 7)})`);
}

main();
