/** A progress bar on stderr: count, percent, rate and ETA; redrawn in place on a TTY, a line every 30 s otherwise. */

export interface ProgressState {
  /** questions finished in this run (answered + failed) */
  done: number;
  failed: number;
  /** questions this run has to do */
  total: number;
  elapsedMs: number;
}

export function formatDuration(s: number): string {
  if (!Number.isFinite(s)) return '?';
  const t = Math.round(s);
  const h = Math.floor(t / 3600);
  const m = Math.floor((t % 3600) / 60);
  const sec = t % 60;
  return h > 0 ? `${h}h${String(m).padStart(2, '0')}m` : m > 0 ? `${m}m${String(sec).padStart(2, '0')}s` : `${sec}s`;
}

export function formatProgress(p: ProgressState, width = 24): string {
  const frac = p.total === 0 ? 1 : p.done / p.total;
  const fill = Math.round(frac * width);
  const rate = p.elapsedMs > 0 ? p.done / (p.elapsedMs / 1000) : 0;
  const eta = rate > 0 ? (p.total - p.done) / rate : Infinity;
  const rateText = rate >= 1 ? `${rate.toFixed(1)} q/s` : rate > 0 ? `${(1 / rate).toFixed(1)} s/q` : '- q/s';
  return (
    `[${'#'.repeat(fill)}${'-'.repeat(width - fill)}] ${p.done}/${p.total} ${(frac * 100).toFixed(1)}%` +
    ` | ${rateText} | ETA ${p.done === p.total ? '0s' : formatDuration(eta)} | elapsed ${formatDuration(p.elapsedMs / 1000)}` +
    (p.failed > 0 ? ` | failed ${p.failed}` : '')
  );
}

export class ProgressBar {
  private last = 0;
  private drawn = false;
  private readonly t0 = performance.now();

  constructor(
    private readonly total: number,
    private readonly stream: NodeJS.WriteStream = process.stderr,
    private readonly tty = Boolean(process.stderr.isTTY),
  ) {}

  update(done: number, failed: number, force = false): void {
    const now = performance.now();
    if (!force && now - this.last < (this.tty ? 150 : 30_000)) return;
    this.last = now;
    const line = `eval ${formatProgress({ done, failed, total: this.total, elapsedMs: now - this.t0 })}`;
    if (this.tty) this.stream.write(`\r${line}\x1b[K`);
    else this.stream.write(`${line}\n`);
    this.drawn = true;
  }

  end(done: number, failed: number): void {
    this.update(done, failed, true);
    if (this.tty && this.drawn) this.stream.write('\n');
  }
}
