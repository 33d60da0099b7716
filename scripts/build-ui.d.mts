/** Types of scripts/build-ui.mjs for the tests that import it. */
export declare const FIRST_LOAD_JS_BUDGET: number;
export declare function buildConsole(
  out?: string,
  opts?: { quiet?: boolean },
): Promise<{ files: Record<string, { bytes: number; gzip: number }>; firstLoadJsGzip: number }>;
