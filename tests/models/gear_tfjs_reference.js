// Reference outputs of GEAR from TF.js itself, for tests/models/test_gear.py.
// Run with the pure-JS @tensorflow/tfjs (CPU backend) installed next to it (and
// tfjs_graph_model.js beside it):
//   npm install @tensorflow/tfjs@4.22.0
//   node gear_tfjs_reference.js MODEL_DIR INPUT.bin N OUT.json
// INPUT.bin: N x 198 x 198 x 3 uint8 RGB (what the test writes); the graph gets them / 255,
// as the GEAR-Predictor code feeds it. OUT.json: {age, gender, race}: N rows of softmaxes.
const fs = require('fs');
const tf = require('@tensorflow/tfjs');
const { loadGraphModel } = require('./tfjs_graph_model');

async function main() {
  const [modelDir, inputFile, count, outFile] = process.argv.slice(2);
  await tf.setBackend('cpu');
  const model = await loadGraphModel(modelDir, 'gear');
  const n = Number(count);
  const bytes = new Uint8Array(fs.readFileSync(inputFile));
  const input = tf.div(tf.tensor4d(Float32Array.from(bytes), [n, 198, 198, 3]), 255);
  const [age, gender, race] = model.execute(input, ['age_output', 'gender_output', 'race_output']);
  const out = { backend: tf.getBackend(), tfjs: tf.version.tfjs,
                age: await age.array(), gender: await gender.array(), race: await race.array() };
  fs.writeFileSync(outFile, JSON.stringify(out));
}
main();
