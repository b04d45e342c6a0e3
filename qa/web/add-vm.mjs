// The web UI adds a VM to a cluster of VMs (qa/tests/vm_cluster_join.rs): signs
// in on the first VM, adds the second as a front-end with the code its
// serial console showed, follows the progress, and waits until the
// dashboard shows both members green.
//
// Environment: WEB_A_URL, WEB_A_HOST (the first VM), WEB_A_FP (optional:
// the certificate's SHA-256 fingerprint when known), WEB_USER,
// WEB_PASSWORD, WEB_B_IP, WEB_B_HOST, WEB_B_CODE.

import { check, env, envOr, peerKey, run, shot } from './lib.mjs';
import { addAndFollow, JOIN_MS, signIn, waitMembers } from './ui.mjs';

const A = env('WEB_A_URL');
const key = await peerKey(A, envOr('WEB_A_FP', ''));

await run([key], async (context) => {
  const page = await context.newPage();
  await signIn(page, A, env('WEB_USER'), env('WEB_PASSWORD'));
  const b = { ip: env('WEB_B_IP'), host: env('WEB_B_HOST'), code: env('WEB_B_CODE'), roles: ['frontend'] };
  const added = await addAndFollow(page, A, b, { progress: 'vm-add-progress' });
  check(added.ok, `adding ${b.host} failed: ${added.alert}\n${added.text}`);
  await waitMembers(page, A, [env('WEB_A_HOST'), b.host], JOIN_MS);
  await shot(page, 'vm-dashboard');
});
