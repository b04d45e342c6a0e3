// The management UI's pages as a user drives them: sign in, read the
// dashboard, add an appliance, change roles, remove one, sign out. Shared by
// cluster.mjs (hosted nodes) and add-vm.mjs (VMs). Selectors follow
// appliance/management/src/web (the pages' forms and their field names).

import { check, shot, step, until, TIMEOUT_MS } from './lib.mjs';

/** A join that reaches green: keys, certificates, the configuration push. */
export const JOIN_MS = Number(process.env.WEB_JOIN_MS || 180000);

/** The session cookie (appliance/management/src/auth/sessions.rs). */
export const COOKIE = 'appliance_session';

/** Fills the first of `selectors` present on `page` with `value`. */
async function fillOne(page, selectors, value) {
  for (const s of selectors) {
    const el = page.locator(s).first();
    if ((await el.count()) > 0) {
      await el.fill(value);
      return;
    }
  }
  throw new Error(`none of ${selectors.join(', ')} on ${page.url()}`);
}

/** The page's main text, for messages and checks. */
export async function mainText(page) {
  const main = page.locator('main');
  return ((await main.count()) > 0 ? await main.innerText() : await page.innerText('body')) || '';
}

/** The text of the page's alert boxes (errors and refusals). */
export async function alerts(page) {
  const boxes = page.locator('[role=alert]');
  const n = await boxes.count();
  const out = [];
  for (let i = 0; i < n; i += 1) out.push(await boxes.nth(i).innerText());
  return out.join('\n');
}

/** Opens `base/path` and returns the response. */
export async function open(page, base, path) {
  const r = await page.goto(new URL(path, base).toString());
  check(r, `no response for ${path}`);
  return r;
}

/**
 * Signs in on `base` as `user`; returns once the dashboard shows. `shotName`
 * screenshots the filled-in sign-in page first.
 */
export async function signIn(page, base, user, password, shotName) {
  await open(page, base, '/signin');
  check(new URL(page.url()).pathname === '/signin', `sign-in page expected, got ${page.url()}`);
  await fillOne(page, ['input[name=name]', 'input[name=username]', 'input[autocomplete=username]'], user);
  await fillOne(page, ['input[type=password]'], password);
  if (shotName) await shot(page, shotName);
  await Promise.all([
    page.waitForURL((u) => u.pathname !== '/signin', { timeout: TIMEOUT_MS }),
    page.locator('form button[type=submit], form input[type=submit], form button').first().click(),
  ]).catch(async (e) => {
    throw new Error(`signing in as ${user} failed: ${e.message}\n${await mainText(page)}`);
  });
  await page.waitForSelector('#members', { timeout: TIMEOUT_MS });
  step(`signed in as ${user} on ${base}`);
}

/** The session cookie's flags as the browser stored them. */
export async function checkCookie(context, base) {
  const cookies = await context.cookies(base);
  const c = cookies.find((x) => x.name === COOKIE);
  check(c, `no ${COOKIE} cookie after sign-in: ${JSON.stringify(cookies)}`);
  check(c.secure, `${COOKIE} is not Secure`);
  check(c.httpOnly, `${COOKIE} is not HttpOnly`);
  check(c.sameSite === 'Strict', `${COOKIE} is SameSite=${c.sameSite}, not Strict`);
  check(c.path === '/', `${COOKIE} has Path=${c.path}`);
  step(`${COOKIE}: Secure, HttpOnly, SameSite=Strict, Path=/`);
}

/** The dashboard's member rows: hostname, state text, whether green. */
export async function dashboardMembers(page) {
  return page.$$eval('#members tbody tr', (rows) =>
    rows.map((r) => {
      const cells = r.querySelectorAll('td');
      const name = r.querySelector('td a strong')?.textContent?.trim() || '';
      const state = cells[4] || cells[cells.length - 2];
      return {
        name,
        state: (state?.innerText || '').replace(/^(green|amber|red|grey|ok|warning|error|unknown)?:\s*/i, '').trim(),
        green: !!state?.querySelector('.light.green'),
        href: r.querySelector('td a')?.getAttribute('href') || '',
      };
    }),
  );
}

/**
 * Waits (bounded, `limitMs`) until the dashboard lists exactly `names`, each
 * green; the page refreshes itself, and is reloaded now and then too.
 */
export async function waitMembers(page, base, names, limitMs) {
  const want = [...names].sort().join(',');
  let seen = [];
  await until(`the dashboard to list ${want}, all green`, limitMs, 1000, async () => {
    if (new URL(page.url()).pathname !== '/') await open(page, base, '/');
    seen = await dashboardMembers(page);
    const got = seen.map((m) => m.name).sort().join(',');
    if (got === want && seen.every((m) => m.green)) return true;
    await page.reload();
    return false;
  }).catch((e) => {
    throw new Error(`${e.message}; last seen ${JSON.stringify(seen)}`);
  });
  step(`dashboard: ${want}, all green`);
  return seen;
}

/**
 * Fills the Add appliance form for the appliance at `ip` (named `host`: its
 * "Add…" link in the discovered list when the beacons found it within a
 * while, else its address typed in) with `code` and `roles`, and submits it.
 * Returns after the next page (the confirmation, or the form with its
 * problems) loaded.
 */
export async function fillAdd(page, base, { ip, host, code, roles }, shotName) {
  await open(page, base, '/add');
  const row = () => page.locator('#discovered tbody tr', { hasText: host });
  const found = await until(`${host} among the discovered appliances`, 30000, 1000, async () => {
    if ((await row().count()) > 0) return true;
    await page.reload();
    return false;
  }).catch(() => false);
  if (found && (await row().locator('a', { hasText: 'Add' }).count()) > 0) {
    await Promise.all([page.waitForLoadState('load'), row().locator('a', { hasText: 'Add' }).first().click()]);
    step(`${host} picked from the discovered appliances`);
  } else {
    await fillOne(page, ['#add-form input[name=address]'], ip);
    step(`${ip} typed in (${host} was not among the discovered appliances)`);
  }
  const form = page.locator('#add-form form');
  check((await form.count()) > 0, `no add form on ${page.url()}: ${await mainText(page)}`);
  // The discovered row's first address may be another of its addresses.
  const address = form.locator('input[name=address]');
  if ((await address.inputValue()).trim() !== ip) await address.fill(ip);
  await form.locator('input[name=code]').fill(code);
  for (const role of ['frontend', 'backend']) {
    await form.locator(`input[type=checkbox][name=${role}]`).setChecked(roles.includes(role));
  }
  if (shotName) await shot(page, shotName);
  await Promise.all([page.waitForLoadState('load'), form.locator('button[type=submit]').click()]);
}

/** On a confirmation page of an add, confirms; false when the page is none. */
export async function confirmIfAsked(page, shotName) {
  const button = page.locator('main form[action="/add/start"] button[type=submit]');
  if ((await button.count()) === 0) return false;
  if (shotName) await shot(page, shotName);
  step(`confirmation: ${(await mainText(page)).replace(/\s+/g, ' ').slice(0, 300)}`);
  await Promise.all([page.waitForLoadState('load'), button.first().click()]);
  return true;
}

/**
 * Submits the form of the node page whose action ends with `suffix`
 * (`/roles`, `/remove`), then its confirmation; returns the final page's
 * alerts ('' when none). `setup(form)` fills the form first.
 */
export async function submitConfirmed(page, suffix, setup, shotName) {
  const form = page.locator(`main form[action$="${suffix}"]`).first();
  check((await form.count()) > 0, `no ${suffix} form on ${page.url()}`);
  if (setup) await setup(form);
  await Promise.all([page.waitForLoadState('load'), form.locator('button[type=submit]').click()]);
  const confirm = page.locator(`main form[action$="${suffix}"]:has(input[name=confirm][value=yes]) button[type=submit]`);
  if ((await confirm.count()) > 0) {
    if (shotName) await shot(page, shotName);
    step(`confirmation: ${(await mainText(page)).replace(/\s+/g, ' ').slice(0, 300)}`);
    await Promise.all([page.waitForLoadState('load'), confirm.first().click()]);
  }
  return alerts(page);
}

/**
 * Submits the add form, confirms, and follows the progress page until its
 * outcome: `{ ok, text, alert }` (`alert`: the refusal's words). The
 * progress screenshot `shots.progress` is taken once a few steps show.
 */
export async function addAndFollow(page, base, appliance, shots = {}) {
  await fillAdd(page, base, appliance, shots.form);
  await confirmIfAsked(page, shots.confirm);
  let shotTaken = !shots.progress;
  const outcome = await until(`the outcome of adding ${appliance.host}`, JOIN_MS, 250, async () => {
    const onProgress = new URL(page.url()).pathname.startsWith('/add/progress');
    const done = page.locator('#progress-outcome .alert.ok, #progress-outcome .alert.warn');
    const alert = await alerts(page);
    const finished = alert || (await done.count()) > 0;
    if (!shotTaken && onProgress && (finished || (await page.locator('#steps li').count()) >= 3)) {
      shotTaken = true;
      await shot(page, shots.progress);
    }
    if (alert) return { ok: false, text: await mainText(page), alert };
    if ((await done.count()) > 0) return { ok: true, text: await mainText(page), alert: '' };
    return false;
  });
  step(`adding ${appliance.host}: ${outcome.ok ? 'done' : `refused: ${outcome.alert.replace(/\s+/g, ' ')}`}`);
  return outcome;
}
