// The web UI against hosted nodes (qa/tests/web_ui.rs runs it three times,
// WEB_PHASE = setup, grow, manage, checking membership through the nodes'
// sockets in between).
//
// Environment: WEB_A_URL, WEB_A_FP, WEB_A_HOST (the node with the seeded
// administrator), WEB_USER, WEB_PASSWORD; setup: WEB_FRESH_URL, WEB_FRESH_FP
// (a node with no administrator); grow: WEB_B_IP, WEB_B_HOST, WEB_B_CODE,
// WEB_C_IP, WEB_C_HOST, WEB_C_CODE; manage: WEB_B_HOST, WEB_C_IP,
// WEB_C_HOST, WEB_C_CODE.

import http from 'node:http';
import { check, env, peerKey, run, shot, step, TIMEOUT_MS } from './lib.mjs';
import {
  addAndFollow,
  submitConfirmed,
  alerts,
  checkCookie,
  dashboardMembers,
  JOIN_MS,
  mainText,
  open,
  signIn,
  waitMembers,
} from './ui.mjs';

const phase = env('WEB_PHASE');
const A = env('WEB_A_URL');
const user = env('WEB_USER');
const password = env('WEB_PASSWORD');
const keys = [await peerKey(A, env('WEB_A_FP'))];
if (phase === 'setup') keys.push(await peerKey(env('WEB_FRESH_URL'), env('WEB_FRESH_FP')));

/**
 * A well-formed code that is not `code`: its first character moved on by one
 * in the codes' alphabet (Crockford base32, appliance/cluster/src/joincode.rs),
 * so that it passes the typing checks and fails only at the appliance.
 */
function wrongCode(code) {
  const alphabet = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
  const first = code[0].toUpperCase();
  return alphabet[(alphabet.indexOf(first) + 1) % alphabet.length] + code.slice(1);
}

/** Serves, on loopback, a page of another origin whose form posts to `action`. */
async function crossSite(action) {
  const body = `<!doctype html><title>elsewhere</title>
<form id="f" method="post" action="${action}"><input type="hidden" name="csrf" value="guessed"></form>
<script>document.getElementById('f').submit()</script>`;
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end(body);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, url: `http://127.0.0.1:${server.address().port}/` };
}

await run(keys, async (context) => {
  const page = await context.newPage();

  if (phase === 'setup') {
    const fresh = env('WEB_FRESH_URL');
    // No administrator: every page leads to /setup, which says where to set one.
    await open(page, fresh, '/');
    check(new URL(page.url()).pathname === '/setup', `a node with no administrator sent / to ${page.url()}`);
    const text = await mainText(page);
    check(/appliance\.admin/.test(text), `/setup does not name the kernel parameter appliance.admin: ${text}`);
    await shot(page, 'setup');
    step('/setup names where to set the first administrator');
    // Sign-in is refused there: a same-origin form post, as the browser sends it.
    const r = await page.evaluate(async ([u, p]) => {
      const res = await fetch('/signin', {
        method: 'POST',
        body: new URLSearchParams({ name: u, password: p, csrf: '' }),
        redirect: 'manual',
      });
      return { status: res.status, type: res.type };
    }, [user, password]);
    const cookies = (await context.cookies(fresh)).filter((c) => c.name === 'appliance_session');
    check(cookies.length === 0, `the node with no administrator signed someone in: ${JSON.stringify(r)}`);
    await open(page, fresh, '/signin');
    check(new URL(page.url()).pathname === '/setup' || /administrator/i.test(await mainText(page)),
      `/signin on a node with no administrator: ${page.url()}`);
    step(`sign-in refused there (POST /signin: ${r.status || r.type})`);
    // The node with one shows the sign-in page.
    await open(page, A, '/');
    check(new URL(page.url()).pathname === '/signin', `not signed in, / went to ${page.url()}`);
    await signIn(page, A, user, password, 'signin');
    return;
  }

  await signIn(page, A, user, password);
  await checkCookie(context, A);

  if (phase === 'grow') {
    // A page of another origin posting a form here is refused, and the
    // session is untouched (the post is a sign-out).
    const site = await crossSite(`${A}/signout`);
    try {
      const other = await context.newPage();
      const landed = other.waitForResponse((res) => res.url().startsWith(`${A}/signout`), { timeout: TIMEOUT_MS });
      await other.goto(site.url);
      const res = await landed;
      check(res.status() === 403, `a cross-site POST /signout answered ${res.status()}`);
      await other.waitForLoadState('load');
      const said = await mainText(other);
      check(/refused/i.test(said), `the cross-site refusal says: ${said}`);
      await other.close();
      step(`cross-site POST refused (403: ${said.split('\n').slice(1, 2).join(' ')})`);
    } finally {
      site.server.close();
    }
    await open(page, A, '/');
    check(new URL(page.url()).pathname === '/', `after the cross-site POST, / went to ${page.url()}`);

    const b = { ip: env('WEB_B_IP'), host: env('WEB_B_HOST'), code: env('WEB_B_CODE'), roles: ['frontend'] };
    const c = { ip: env('WEB_C_IP'), host: env('WEB_C_HOST'), code: env('WEB_C_CODE'), roles: ['frontend'] };
    const added = await addAndFollow(page, A, b, { form: 'add', confirm: 'add-confirm', progress: 'add-progress' });
    check(added.ok, `adding ${b.host} failed: ${added.alert}`);
    await waitMembers(page, A, [env('WEB_A_HOST'), b.host], JOIN_MS);
    await shot(page, 'dashboard');

    // A wrong code: a clear message, nothing changes.
    const wrong = await addAndFollow(page, A, { ...c, code: wrongCode(c.code) });
    check(!wrong.ok, `a wrong code added ${c.host}`);
    check(/code/i.test(wrong.alert), `the wrong code's message does not say it is the code: ${wrong.alert}`);
    await shot(page, 'add-failure');
    // A second back-end: refused by the placement rules, explained.
    const backend = await addAndFollow(page, A, { ...c, roles: ['frontend', 'backend'] });
    check(!backend.ok, `${c.host} was added as a second back-end`);
    check(/back-end/i.test(backend.alert), `the second back-end's refusal does not explain: ${backend.alert}`);
    await shot(page, 'add-refused');
    await open(page, A, '/');
    const names = (await dashboardMembers(page)).map((m) => m.name).sort();
    check(names.join(',') === [env('WEB_A_HOST'), b.host].sort().join(','), `after the refusals the dashboard lists ${names}`);
    step('membership unchanged after the refusals');
    return;
  }

  if (phase === 'manage') {
    const aHost = env('WEB_A_HOST');
    const bHost = env('WEB_B_HOST');
    const c = { ip: env('WEB_C_IP'), host: env('WEB_C_HOST'), code: env('WEB_C_CODE'), roles: ['frontend'] };
    const added = await addAndFollow(page, A, c);
    check(added.ok, `adding ${c.host} failed: ${added.alert}`);
    const members = await waitMembers(page, A, [aHost, bHost, c.host], JOIN_MS);
    await shot(page, 'dashboard-three');

    // A's roles: front-end and back-end -> back-end only (B and C stay front-ends).
    const aRow = members.find((m) => m.name === aHost);
    await open(page, A, aRow.href);
    await shot(page, 'node');
    const rolesRefused = await submitConfirmed(page, '/roles', async (form) => {
      await form.locator('input[type=checkbox][name=frontend]').setChecked(false);
      await form.locator('input[type=checkbox][name=backend]').setChecked(true);
    }, 'roles-confirm');
    check(!rolesRefused, `changing ${aHost}'s roles: ${rolesRefused}`);
    check(/roles were changed/i.test(await mainText(page)), `no notice after changing roles: ${await mainText(page)}`);
    step(`${aHost} is now a back-end only`);

    // C removed.
    const cRow = members.find((m) => m.name === c.host);
    await open(page, A, cRow.href);
    const removeRefused = await submitConfirmed(page, '/remove', null, 'remove-confirm');
    check(!removeRefused, `removing ${c.host}: ${removeRefused}`);
    await waitMembers(page, A, [aHost, bHost], JOIN_MS);
    step(`${c.host} removed`);

    for (const [path, name] of [['/events', 'events'], ['/settings', 'settings'], ['/accounts', 'accounts']]) {
      await open(page, A, path);
      check(!(await alerts(page)), `${path}: ${await alerts(page)}`);
      if (name === 'events') {
        const text = await mainText(page);
        check(text.includes(c.host), `the events page does not mention ${c.host}'s addition or removal`);
      }
      await shot(page, name);
    }

    // Sign out: the next page asks to sign in again.
    await open(page, A, '/');
    await Promise.all([page.waitForLoadState('load'), page.locator('form.signout button').first().click()]);
    await open(page, A, '/events');
    check(new URL(page.url()).pathname === '/signin', `after signing out /events went to ${page.url()}`);
    step('signed out: /events leads to the sign-in page');
    return;
  }

  throw new Error(`unknown WEB_PHASE ${phase}`);
});
