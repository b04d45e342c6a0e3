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
 * Fills the Add appliance form for the appliance at `ip` (named `host`,
 * picked from the discovered list when there, else typed in) with `code`
 * and `roles`, and submits it. Returns after the submit's page loaded.
 */
export async function fillAdd(page, base, { ip, host, code, roles }, shotName) {
  await open(page, base, '/add');
  // A discovered appliance is picked from the list; else its address is typed.
  const pick = page.locator(`input[type=radio][value="${ip}"]`);
  if ((await pick.count()) > 0) {
    await pick.first().check();
    step(`${host} (${ip}) picked from the discovered appliances`);
  } else {
    const found = await until(`${host} among the discovered appliances`, 20000, 1000, async () => {
      if ((await page.locator(`text=${host}`).count()) > 0) return true;
      await page.reload();
      return false;
    }).catch(() => false);
    const again = page.locator(`input[type=radio][value="${ip}"]`);
    if (found && (await again.count()) > 0) {
      await again.first().check();
      step(`${host} (${ip}) picked from the discovered appliances`);
    } else {
      await fillOne(page, ['input[name=address]', 'input[name=ip]'], ip);
      step(`${ip} typed in (${host} not among the discovered)`);
    }
  }
  await fillOne(page, ['input[name=code]', 'input[name=join_code]'], code);
  for (const role of ['frontend', 'backend']) {
    const box = page.locator(`input[type=checkbox][name=roles][value=${role}], input[type=checkbox][name=${role}]`).first();
    if ((await box.count()) > 0) await box.setChecked(roles.includes(role));
  }
  if (shotName) await shot(page, shotName);
  await Promise.all([
    page.waitForLoadState('load'),
    page.locator('main form button[type=submit], main form input[type=submit]').first().click(),
  ]);
}

/** The confirmation page's button, when the page is a confirmation. */
export async function confirmIfAsked(page, shotName) {
  const path = new URL(page.url()).pathname;
  const button = page.locator('main form[action="/add/start"] button, main form[action="/add/start"] input[type=submit]');
  if ((await button.count()) === 0) return false;
  if (shotName) await shot(page, shotName);
  step(`confirmation (${path}): ${(await mainText(page)).split('\n').slice(0, 6).join(' | ')}`);
  await Promise.all([page.waitForLoadState('load'), button.first().click()]);
  return true;
}

/** Submits the add form, confirms, follows the progress; returns the page's outcome text. */
export async function addAndFollow(page, base, appliance, shots = {}) {
  await fillAdd(page, base, appliance, shots.form);
  await confirmIfAsked(page, shots.confirm);
  let shotTaken = false;
  const outcome = await until(`the outcome of adding ${appliance.host}`, JOIN_MS, 500, async () => {
    const text = await mainText(page);
    const alert = await alerts(page);
    if (shots.progress && !shotTaken && new URL(page.url()).pathname.startsWith('/add/progress')) {
      shotTaken = true;
      await shot(page, shots.progress);
    }
    if (alert) return { ok: false, text, alert };
    if (/\b(is now a member|joined the cluster|was added|added to the cluster)\b/i.test(text)) {
      return { ok: true, text, alert: '' };
    }
    return false;
  });
  step(`adding ${appliance.host}: ${outcome.ok ? 'done' : `refused: ${outcome.alert.replace(/\s+/g, ' ')}`}`);
  return outcome;
}
