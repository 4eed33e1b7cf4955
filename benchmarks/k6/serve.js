// Open-model load for `make bench-serve` (components/benches/serve_load.py runs it): k6's
// constant-arrival-rate executor starts RATE requests a second for SECONDS whether or not the
// server keeps up, so queueing shows in the latency as shoppers would meet it.
// ENDPOINT: recommend (by a known shopper's shop id), mix (the shop's page views: 70% by shopper,
// 10% recent items, 5% text, 5% nothing, 10% similar_items), feedback (1-5 click events a call,
// fresh event ids). USERS_FILE, ITEMS_FILE, TEXTS_FILE: one entry a line. SUMMARY: the JSON
// summary's path.
import http from 'k6/http';
import { check } from 'k6';
import { SharedArray } from 'k6/data';
import { Counter } from 'k6/metrics';

const lines = (path) => open(path).split('\n').filter((line) => line.length > 0);
const users = new SharedArray('users', () => lines(__ENV.USERS_FILE));
const items = new SharedArray('items', () => lines(__ENV.ITEMS_FILE));
const texts = new SharedArray('texts', () => lines(__ENV.TEXTS_FILE));
const acknowledged = new Counter('events_acknowledged');   // events in feedback calls answered 2xx
const rate = Number(__ENV.RATE);
const base = __ENV.BASE_URL;
const json = { headers: { 'Content-Type': 'application/json' }, timeout: '30s' };
const authorised = { headers: { ...json.headers, Authorization: `Bearer ${__ENV.TOKEN}` }, timeout: '30s' };

const KINDS = ['user', 'items', 'text', 'nothing', 'similar'];
// a threshold per kind of page view makes k6 report each kind's latency in the summary
const byKind = __ENV.ENDPOINT === 'mix'
  ? Object.fromEntries(KINDS.map((kind) => [`http_req_duration{kind:${kind}}`, ['max>=0']])) : {};

export const options = {
  discardResponseBodies: true,
  thresholds: byKind,
  summaryTrendStats: ['count', 'med', 'p(90)', 'p(99)', 'max'],
  scenarios: {
    load: {
      executor: 'constant-arrival-rate', rate: rate, timeUnit: '1s', duration: `${__ENV.SECONDS}s`,
      preAllocatedVUs: Math.max(20, rate), maxVUs: Math.max(100, 4 * rate),
    },
  },
};

const pick = (list) => list[Math.floor(Math.random() * list.length)];
const some = (list, n) => Array.from({ length: n }, () => pick(list));

function pageView() {
  const draw = Math.random();
  if (draw < 0.70) return ['recommend', { user: pick(users), k: 10 }, 'user'];
  if (draw < 0.80) return ['recommend', { items: some(items, 1 + Math.floor(Math.random() * 5)), k: 10 }, 'items'];
  if (draw < 0.85) return ['recommend', { text: pick(texts), k: 10 }, 'text'];
  if (draw < 0.90) return ['recommend', { k: 10 }, 'nothing'];
  return ['similar_items', { item: pick(items), k: 10 }, 'similar'];
}

export default function () {
  let res;
  if (__ENV.ENDPOINT === 'feedback') {
    const events = Array.from({ length: 1 + Math.floor(Math.random() * 5) }, (_, i) => ({
      event_id: `${__VU}-${__ITER}-${i}-${Date.now()}`, kind: 'click', user: pick(users), item: pick(items),
    }));
    res = http.post(`${base}/feedback`, JSON.stringify({ events }), authorised);
    if (res.status >= 200 && res.status < 300) acknowledged.add(events.length);
  } else {
    const [path, body, kind] = __ENV.ENDPOINT === 'mix' ? pageView() : ['recommend', { user: pick(users), k: 10 }, 'user'];
    res = http.post(`${base}/${path}`, JSON.stringify(body), { ...json, tags: { kind } });
  }
  check(res, { 'status 2xx': (r) => r.status >= 200 && r.status < 300 });
}

export function handleSummary(data) {
  return { [__ENV.SUMMARY]: JSON.stringify(data) };
}
