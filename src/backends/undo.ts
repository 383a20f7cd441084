/** The undo list of a multi-step change: each step that changed something pushes how to take
 * it back; on failure the list runs in reverse, so nothing is left half-applied. */
export class Undo {
  #steps: Array<[string, () => void]> = [];

  push(what: string, fn: () => void): void {
    this.#steps.push([what, fn]);
  }

  /** Runs every undo step in reverse; a failing step is reported and the rest still run. */
  run(log: (msg: string) => void): void {
    for (const [what, fn] of this.#steps.reverse()) {
      try {
        fn();
      } catch (e) {
        log(`rollback: ${what}: ${(e as Error).message}`);
      }
    }
    this.#steps = [];
  }
}
