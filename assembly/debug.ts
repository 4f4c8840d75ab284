// DEBUG: true in the debug build, false in the release build, as
// AssemblyScript's own runtime writes its invariants (std/assembly/rt:
// `if (DEBUG) assert(...)`). The release target sets noAssert, so
// ASC_NO_ASSERT folds DEBUG to false at compile time and every
// `if (DEBUG) assert(...)` compiles out, its condition with it: the release
// module imports nothing (no abort) and costs nothing for them. The debug
// build runs them in the tests (test/fuzz.test.ts, test/reference.test.ts).
// @ts-ignore: decorator
@inline export const DEBUG: bool = !ASC_NO_ASSERT;
