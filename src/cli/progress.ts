/** One carriage-return progress line on stderr, printed only when the percentage moves by a step. */
export function progressLine(label: string, stepPct = 10): (done: number, total: number) => void {
  let last = -1;
  return (done, total) => {
    const pct = total > 0 ? Math.floor((100 * done) / total) : 100;
    if (pct !== last && (pct % stepPct === 0 || done === total)) {
      process.stderr.write(`\r${label} ${pct}%   ${done === total ? '\n' : ''}`);
      last = pct;
    }
  };
}
