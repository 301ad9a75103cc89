// Not a test: harness.test.ts runs this as a child process to check what skipOrFail reports with
// and without CI set, without having to take a real prerequisite away.
import t from 'tap';
import { skipOrFail } from './runtime.js';

t.test('drill', async (t) => {
  skipOrFail(t, 'drill-reason: nothing is missing, this is a drill');
});
