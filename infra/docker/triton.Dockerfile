# Triton from NGC, plus what inferloop's model needs: its model.py (python backend) runs the ONNX file with
# onnxruntime, which the NGC image does not carry. 24.10 is Triton 2.51, the version inferloop is tested with.
FROM nvcr.io/nvidia/tritonserver:24.10-py3
RUN pip install --no-cache-dir "onnxruntime>=1.18" "numpy<2"
ENV PYTHONDONTWRITEBYTECODE=1
USER triton-server
