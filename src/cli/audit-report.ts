/** The broken-chain summary both `coffer audit verify` forms print (offline and through the API). */
export function brokenSeqsLine(badSeqs: readonly number[], badCount: number, checked: number): string {
  const more = badCount > badSeqs.length ? ` and ${badCount - badSeqs.length} more` : '';
  return `${badCount} broken sequence number(s) among ${checked} events read: ${badSeqs.join(', ')}${more}`;
}
