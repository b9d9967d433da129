// svc.mjs with an AV1 publisher (`codec=av1`, L3T3 unless SVC_MODE says otherwise): the
// server selects its layers by the Dependency Descriptor header extension.
process.env.SVC_CODEC = 'av1';
// Full SVC, as the issue asks of AV1 (VP9's run takes k-SVC, L3T3_KEY).
process.env.SVC_MODE = process.env.SVC_MODE || 'L3T3';
await import('./svc.mjs');
