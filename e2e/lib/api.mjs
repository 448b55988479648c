// The JSON API, for setting up a world the journeys then look at.
export async function login(base, username) {
  const r = await fetch(`${base}/api/v1/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ tenant: 'demo-county', username, password: 'Demo@2026' }),
  });
  if (!r.ok) throw new Error(`login ${username}: ${r.status}`);
  return (await r.json()).token;
}

export async function call(base, token, method, path, body) {
  const r = await fetch(`${base}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

/// A valid GB 11643 resident ID: region, birth date, sequence and check character.
export function residentId(region, birth, seq) {
  const body = `${region}${birth}${String(seq).padStart(3, '0')}`;
  const w = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
  const sum = [...body].reduce((s, d, i) => s + Number(d) * w[i], 0);
  return body + '10X98765432'[sum % 11];
}

const NAMES = ['演示甲', '演示乙', '演示丙', '演示丁', '演示戊', '演示己', '演示庚'];

/// `n` closed outpatient visits of new patients at the village doctor's clinic.
export async function villageVisits(base, n) {
  const doc = await login(base, 'village.doctor');
  for (let i = 0; i < n; i++) {
    const reg = await call(base, doc, 'POST', '/api/v1/patients', {
      name: NAMES[i % NAMES.length],
      resident_id: residentId('130997', `1971030${1 + (i % 9)}`, 100 + 2 * i + 1),
      phone: `137000${String(i).padStart(5, '0')}`,
    });
    const enc = await call(base, doc, 'POST', '/api/v1/encounters', {
      person_id: reg.person.id, chief_complaint: '头痛', kind: 'outpatient',
    });
    await call(base, doc, 'POST', `/api/v1/encounters/${enc.id}/diagnoses`, { code: 'J06.9' });
    await call(base, doc, 'POST', `/api/v1/encounters/${enc.id}/close`, {});
  }
}

/// Waits until the statistics rollups count at least `visits` visits.
export async function statisticsCaughtUp(base, visits) {
  const bureau = await login(base, 'bureau');
  const deadline = Date.now() + 30_000;
  for (;;) {
    const r = await call(base, bureau, 'GET', '/api/v1/statistics/kpis');
    const v = r.kpis.find((k) => k.code === 'visits');
    if ((v.value ?? 0) >= visits) return r;
    if (Date.now() > deadline) throw new Error(`statistics saw ${v.text} visits, wanted ${visits}`);
    await new Promise((ok) => setTimeout(ok, 200));
  }
}

/// An up-referral from the village doctor's clinic to the county hospital, for a new patient.
export async function upReferral(base, seq, reason) {
  const doc = await login(base, 'village.doctor');
  const institutions = await call(base, doc, 'GET', '/api/v1/institutions');
  const county = institutions.find((i) => i.code === 'county-hospital');
  const reg = await call(base, doc, 'POST', '/api/v1/patients', {
    name: '转诊演示', resident_id: residentId('130997', '19580515', 300 + 2 * seq + 1),
  });
  return call(base, doc, 'POST', '/api/v1/referrals', {
    person_id: reg.person.id, direction: 'up', to_institution_id: county.id, reason, urgent: true,
  });
}
