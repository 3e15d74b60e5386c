-- resolve: jobs just acked count as done for the jobs enqueued after them
-- (docs/protocol.md, "Dependencies"): a job with no dependency left goes to todos.
-- (controls prelude)
-- KEYS: 1.. the control block (CTL_N keys)
-- ARGV: the ids the ack moved to done
-- Returns: how many jobs became claimable.
-- Sent inside the ack's MULTI/EXEC when the queue uses dependencies (its uses_after key,
-- read in the ack's WATCH), so the last ack and the release of the job waiting for it
-- are one step; sent alone after that MULTI found the script unloaded (NOSCRIPT). Each
-- pair is removed as it is counted, so a second run counts nothing twice.
ctl_init(1)
local woken = 0
for _, id in ipairs(ARGV) do
  woken = woken + ctl_dependents(id, true, 'done')
end
return woken
