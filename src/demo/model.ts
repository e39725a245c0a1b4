/**
 * Where the bundled demo model lives: models/demo/ at the package root (tower/, projector/, llm.gguf,
 * manifest.json). Found from this module's own location, so it works from src/ (tests) and dist/ alike.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface DemoModelPaths {
  tower: string;
  projector: string;
  llm: string;
}

/** The package root: the nearest directory above this file with llm2clip's package.json. */
function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg)) {
      try {
        if ((JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'llm2clip') return dir;
      } catch {
        // not ours; keep looking
      }
    }
    const up = dirname(dir);
    if (up === dir) throw new Error('cannot find the llm2clip package root (package.json) above ' + fileURLToPath(import.meta.url));
    dir = up;
  }
}

export function demoModelDir(): string {
  return resolve(packageRoot(), 'models', 'demo');
}

export function demoModelPaths(dir = demoModelDir()): DemoModelPaths {
  return { tower: join(dir, 'tower'), projector: join(dir, 'projector'), llm: join(dir, 'llm.gguf') };
}

/** The paths when all three parts are present, else undefined. */
export function findDemoModel(dir = demoModelDir()): DemoModelPaths | undefined {
  const p = demoModelPaths(dir);
  const ok = existsSync(join(p.tower, 'tower.json')) && existsSync(join(p.projector, 'projector.json')) && existsSync(p.llm);
  return ok ? p : undefined;
}
