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

/// A hypertension enrollment at the village doctor's clinic for a new patient.
export async function hypertensionEnrollment(base, seq) {
  const doc = await login(base, 'village.doctor');
  const reg = await call(base, doc, 'POST', '/api/v1/patients', {
    name: '随访演示', resident_id: residentId('130997', '19550320', 500 + 2 * seq + 1),
  });
  return call(base, doc, 'POST', '/api/v1/followups/enrollments', {
    person_id: reg.person.id, disease: 'hypertension', diagnosed_on: '2025-03-01',
  });
}

/// A baseline the bureau can see past suppression: `n` closed visits at the village clinic and
/// `n` up-referrals from it to the county hospital, each accepted, arrived and referred back down.
export async function baseline(base, n) {
  await villageVisits(base, n);
  const county = await login(base, 'coordinator');
  for (let i = 0; i < n; i++) {
    const up = await upReferral(base, 100 + i, '基线转诊');
    await call(base, county, 'POST', `/api/v1/referrals/${up.id}/accept`, {});
    await call(base, county, 'POST', `/api/v1/referrals/${up.id}/arrive`, {});
    await call(base, county, 'POST', `/api/v1/referrals/${up.id}/down`, {
      discharge_summary: '病情平稳', rehab_plan: '社区随访',
    });
  }
}

/// Someone already in the community, known by name, sex, birth year and village only, so that a
/// new registration with the same name and sex is a probable (not certain) match.
export async function knownResident(base) {
  const other = await login(base, 'village.doctor2');
  const r = await call(base, other, 'POST', '/api/v1/patients', {
    name: '王秀英', sex: 'female', birth_date: '1948', address_division: '130999101201',
  });
  return r.person.id;
}

/// Waits until the KPIs satisfy `ok(kpis by code)`.
export async function kpisWhen(base, ok) {
  const bureau = await login(base, 'bureau');
  const deadline = Date.now() + 30_000;
  for (;;) {
    const r = await call(base, bureau, 'GET', '/api/v1/statistics/kpis');
    const by = Object.fromEntries(r.kpis.map((k) => [k.code, k]));
    if (ok(by)) return by;
    if (Date.now() > deadline) throw new Error(`KPIs never got there: ${JSON.stringify(by)}`);
    await new Promise((done) => setTimeout(done, 200));
  }
}
