// What every browser script shares: its settings from the environment, the
// node's certificate checked against the fingerprint the test expects, Debian's
// chromium launched headless on a fresh profile that trusts only that
// certificate's key, screenshots, and bounded waits.
//
// Environment (set by the Rust tests, qa/tests/web_support):
//   WEB_SCREENSHOTS   directory the screenshots go to (created)
//   WEB_CHROMIUM      the browser (default /usr/bin/chromium)
//   WEB_TIMEOUT_MS    bound of one page action or wait (default 30000)
// and per script, the node URLs, fingerprints and credentials it names.

import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash, X509Certificate } from 'node:crypto';
import tls from 'node:tls';
import { chromium } from 'playwright-core';

/** The screenshots' size: what the README shows. */
export const VIEWPORT = { width: 1280, height: 800 };

/** A required environment variable; exits with its name when missing. */
export function env(name) {
  const v = process.env[name];
  if (v === undefined || v === '') {
    throw new Error(`environment variable ${name} is not set`);
  }
  return v;
}

/** An optional environment variable. */
export function envOr(name, fallback) {
  const v = process.env[name];
  return v === undefined || v === '' ? fallback : v;
}

export const TIMEOUT_MS = Number(envOr('WEB_TIMEOUT_MS', '30000'));

/** `AB:CD:...` or `abcd...`: compared without colons and case. */
function normalFingerprint(f) {
  return f.replace(/[^0-9a-fA-F]/g, '').toLowerCase();
}

/** The certificate (DER) `url`'s server presents, not trusting it. */
async function servedCertificate(url) {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host: u.hostname.replace(/^\[|\]$/g, ''),
      port: Number(u.port || 443),
      rejectUnauthorized: false,
      // SNI takes names only.
      servername: /^[0-9.:[\]]+$/.test(u.hostname) ? undefined : u.hostname,
      timeout: TIMEOUT_MS,
    });
    socket.once('secureConnect', () => {
      const cert = socket.getPeerCertificate(false);
      socket.destroy();
      if (!cert || !cert.raw) reject(new Error(`${url} presented no certificate`));
      else resolve(cert.raw);
    });
    socket.once('timeout', () => {
      socket.destroy();
      reject(new Error(`no TLS handshake with ${url} within ${TIMEOUT_MS} ms`));
    });
    socket.once('error', (e) => reject(new Error(`TLS to ${url}: ${e.message}`)));
  });
}

/** How long a node may go on serving its previous certificate: managementd
 * looks for a new one every 5 s (docs/management.md). */
const CERT_SWAP_MS = 30000;

/**
 * Checks that `url`'s server presents the certificate with SHA-256
 * `fingerprint` (when given; waiting up to CERT_SWAP_MS for a just-changed
 * one to be served) and returns the base64 SHA-256 of its public key
 * (SPKI): chromium then accepts that key and no other
 * (`--ignore-certificate-errors-spki-list`).
 */
export async function peerKey(url, fingerprint) {
  const deadline = Date.now() + CERT_SWAP_MS;
  for (;;) {
    const cert = new X509Certificate(await servedCertificate(url));
    const ok = !fingerprint || normalFingerprint(cert.fingerprint256) === normalFingerprint(fingerprint);
    if (ok) {
      const spki = cert.publicKey.export({ type: 'spki', format: 'der' });
      return createHash('sha256').update(spki).digest('base64');
    }
    if (Date.now() >= deadline) {
      throw new Error(
        `${url} presented certificate ${cert.fingerprint256}, expected ${fingerprint} (waited ${CERT_SWAP_MS} ms)`,
      );
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}

/**
 * Launches chromium on a fresh profile (removed by `close`) that accepts
 * the servers' keys in `spkiHashes` (see `peerKey`) and no other untrusted
 * certificate. With no hash at all it falls back to accepting any
 * certificate (`ignoreHTTPSErrors`): only for a test that cannot know it.
 */
export async function launch(spkiHashes = []) {
  const profile = mkdtempSync(join(tmpdir(), 'qa-web-profile-'));
  const args = [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--disable-dev-shm-usage',
  ];
  if (spkiHashes.length > 0) {
    args.push(`--ignore-certificate-errors-spki-list=${spkiHashes.join(',')}`);
  }
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: envOr('WEB_CHROMIUM', '/usr/bin/chromium'),
    headless: true,
    args,
    viewport: VIEWPORT,
    ignoreHTTPSErrors: spkiHashes.length === 0,
    timeout: TIMEOUT_MS,
  });
  context.setDefaultTimeout(TIMEOUT_MS);
  context.setDefaultNavigationTimeout(TIMEOUT_MS);
  const close = async () => {
    await context.close().catch(() => {});
    rmSync(profile, { recursive: true, force: true });
  };
  return { context, close };
}

/** Where screenshots go (`WEB_SCREENSHOTS`), created. */
export function screenshotDir() {
  const dir = env('WEB_SCREENSHOTS');
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** The page as the user sees it, 1280x800, as `<name>.png`. */
export async function shot(page, name) {
  const path = join(screenshotDir(), `${name}.png`);
  // Animations and the caret would make screenshots differ run to run.
  await page.screenshot({ path, animations: 'disabled', caret: 'hide' });
  console.log(`screenshot ${name}.png (${page.url()})`);
}

/** Fails with `what` unless `cond`. */
export function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
}

/** Polls `probe` (async, truthy ends) every `everyMs` up to `limitMs`. */
export async function until(what, limitMs, everyMs, probe) {
  const deadline = Date.now() + limitMs;
  let last;
  for (;;) {
    try {
      const v = await probe();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() >= deadline) {
      throw new Error(`${what}: not within ${limitMs} ms${last ? ` (last error: ${last.message})` : ''}`);
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** Logs one step, with the time since the script started. */
const t0 = Date.now();
export function step(what) {
  console.log(`[${((Date.now() - t0) / 1000).toFixed(1)} s] ${what}`);
}

/**
 * Runs `main(ctx)` with a launched browser and exits non-zero with the
 * error (and a screenshot `failure-<n>` of every open page) when it fails.
 */
export async function run(spkiHashes, main) {
  const { context, close } = await launch(spkiHashes);
  let code = 0;
  try {
    await main(context);
  } catch (e) {
    code = 1;
    console.error(`FAILED: ${e.stack || e}`);
    let n = 0;
    for (const page of context.pages()) {
      n += 1;
      try {
        console.error(`open page ${n}: ${page.url()}`);
        console.error(((await page.textContent('body')) || '').slice(0, 3000));
        await shot(page, `failure-${n}`);
      } catch {
        // The page may be gone with the browser.
      }
    }
  } finally {
    await close();
  }
  process.exit(code);
}
